"""A Spark standalone cluster on this machine (`make cluster-up` / `make cluster-down`) and the artefacts executors
need (`make dist`). Tooling, not library: nothing in dataflow/ imports it."""

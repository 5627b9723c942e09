"""Any stage of the table (dataflow/stages/table.py) by name: what the chain runs as a subprocess and what
`--print-submit` prints.

    python -m jobs.stage NAME --input IN --output OUT [--conf conf/pipeline.yaml] [--set key.path=value ...]
    spark-submit jobs/stage.py NAME --input IN --output OUT ...
"""
from dataflow.pipeline.job import main

if __name__ == "__main__":
    main()

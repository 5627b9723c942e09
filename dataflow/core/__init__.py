"""The floor of the data factory: filesystem, configuration and schema, the stage contract and runner, the Spark
session, progress, the record schema, text and hash helpers. Imports nothing else of dataflow."""

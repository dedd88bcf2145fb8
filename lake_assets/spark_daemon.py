"""A PySpark worker daemon that imports the reader's modules before it forks a worker, so each
Python worker of Apache Spark (data source planning, reading) starts with them loaded instead of
importing pyarrow and lake_assets again. Use it on a Spark cluster with
`spark.python.daemon.module=lake_assets.spark_daemon`."""

import pyspark.worker  # noqa: F401  (the default worker, and what the data source workers build on)
from pyspark import daemon

import lake_assets.core.reader  # noqa: F401
import lake_assets.core.records  # noqa: F401

if __name__ == "__main__":
    daemon.manager()

"""PySpark job of the example pipeline's prepare-data step: a synthetic labelled table, as CSV.

Runs on the stack's Spark image in local mode (`spark-submit --master 'local[*]'`): a one-pod step
needs no executors, no operator and no RBAC. The pipeline embeds this file's text in the step's
command when it compiles, so it may import only what the Spark image has: PySpark and the standard
library. Run it by hand the same way:

    spark-submit --master 'local[*]' pipelines/prepare_data.py --output /tmp/dataset --rows 1000

The label follows a known linear rule plus noise (`f3` is pure noise), so a linear classifier
should score over 90% accuracy: a much lower score in the train step means the data is wrong.
"""

from __future__ import annotations

import argparse
import os

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

FEATURES = ("f0", "f1", "f2", "f3")
WEIGHTS = (1.5, -2.0, 0.5, 0.0)
NOISE = 0.5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="directory the CSV dataset is written to (replaced)")
    parser.add_argument("--rows", type=int, required=True, help="number of rows")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument("--output-path-file", help="file that receives --output (the step's output parameter)")
    args = parser.parse_args(argv)
    if args.rows < 10:
        parser.error(f"--rows must be at least 10 (got {args.rows})")

    spark = SparkSession.builder.appName("train-and-serve-prepare-data").getOrCreate()
    try:
        table = spark.range(args.rows).select(
            *(F.randn(args.seed + i).alias(name) for i, name in enumerate(FEATURES))
        )
        score = sum((F.col(name) * weight for name, weight in zip(FEATURES, WEIGHTS)), F.lit(0.0))
        table = table.withColumn("label", (score + NOISE * F.randn(args.seed + len(FEATURES)) > 0).cast("int"))
        # One part file: the train step reads plain CSV without Spark.
        table.coalesce(1).write.mode("overwrite").option("header", True).csv(f"file://{args.output}")

        written = spark.read.option("header", True).option("inferSchema", True).csv(f"file://{args.output}")
        counts = {row["label"]: row["count"] for row in written.groupBy("label").count().collect()}
        if sum(counts.values()) != args.rows or set(counts) != {0, 1}:
            raise RuntimeError(f"{args.output}: expected {args.rows} rows of labels 0 and 1, found {counts}")
        print(f"wrote {args.rows} rows to {args.output}: label counts {dict(sorted(counts.items()))}")
    finally:
        spark.stop()

    if args.output_path_file:
        os.makedirs(os.path.dirname(args.output_path_file), exist_ok=True)
        with open(args.output_path_file, "w") as out:
            out.write(args.output)


if __name__ == "__main__":
    main()

"""Example Kubeflow Pipelines v2 pipeline: prepare data with Spark, train, log to TensorBoard, serve.

    prepare-data  the stack's Spark image, PySpark in local mode (`prepare_data.py`): a synthetic
                  labelled table as CSV on the shared-data volume; its event log where the
                  stack's history server reads (`spark_event_log_dir`: the Spark event-log volume
                  by default, the S3 prefix on EKS), so the history server shows the run
    train         scikit-learn in a pinned Python image: logistic regression, one solver
                  iteration at a time with TensorBoard scalars for each, `model.joblib`, KFP metrics
    deploy        a KServe InferenceService (`inference_service.py`) applied with the Kubernetes
                  Python client in `serving_namespace`, waited for until Ready

Everything a run writes is under the run's id on the shared-data volume, which notebooks, Spark
jobs and TensorBoard see at the same path:

    /mnt/shared-data/pipelines/train-and-serve/<run>/dataset/    CSV
    /mnt/shared-data/models/<model_name>/<run>/model.joblib       served as pvc://shared-data/models/<model_name>/<run>
    /mnt/shared-data/tensorboard/<model_name>/<run>/              TensorBoard event files

Compile offline (`make pipeline`, in the `.venv-pipelines` virtualenv):

    python -m pipelines.train_and_serve --output build/pipelines/train_and_serve.yaml
"""

import argparse
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes

from pipelines.inference_service import inference_service

PIPELINE_NAME = "train-and-serve"

# The platform's shared volumes: (claim, mount path), as in components/storage.py SHARED_VOLUMES.
# That module needs Pulumi, which this virtualenv does not have; tests/test_pipeline.py keeps the two equal.
SHARED_DATA = ("shared-data", "/mnt/shared-data")
SPARK_EVENT_LOGS = ("spark-event-logs", "/mnt/spark-events")
SPARK_EVENT_LOG_DIR = f"file://{SPARK_EVENT_LOGS[1]}"
# S3A authenticates with the IRSA token EKS projects into the pod (as components/spark.py
# S3A_CREDENTIALS_PROVIDER; a test keeps the two equal). Only an s3a:// path uses it.
S3A_CREDENTIALS_PROVIDER = "software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider"
# Group 100 owns the shared volumes (components/kubernetes_types.py SHARED_GROUP): every step runs
# with it as primary group and a non-root user (185 is the Spark image's `spark`, components/spark.py).
SHARED_GROUP = 100
SPARK_UID = 185
PYTHON_UID = 1000

PYTHON_IMAGE = "python:3.12.12-slim"
# The model is loaded by KServe's sklearn runtime: keep scikit-learn (and numpy, whose pickles it
# holds) at the versions of that runtime in the KServe release the stack pins. The whole closure is
# pinned so that a run next year trains the same model.
TRAIN_PACKAGES = [
    "scikit-learn==1.6.1",
    "numpy==2.2.6",
    "scipy==1.15.3",
    "joblib==1.5.1",
    "threadpoolctl==3.6.0",
    "tensorboardX==2.6.4",
    "protobuf==6.33.6",
    "packaging==25.0",
]
# The Kubernetes 1.34 client, matching the cluster (its own dependencies resolve when the step starts).
DEPLOY_PACKAGES = ["kubernetes==34.1.0"]
DEPLOY_TIMEOUT_SECONDS = 900

# Set on a task from the `spark_image` parameter; this name only shows where that was forgotten.
SPARK_IMAGE_UNSET = "dataplatform/spark:set-from-the-spark_image-parameter"
PREPARE_DATA_SOURCE = (Path(__file__).resolve().parent / "prepare_data.py").read_text()
# `umask 002`: what a step creates on a shared volume stays writable for group 100.
SPARK_SUBMIT = f"""\
umask 002
event_log_dir="$1"
shift
script="$(mktemp -d)/prepare_data.py"
printf '%s' "$0" > "$script"
exec /opt/spark/bin/spark-submit \\
  --master 'local[*]' \\
  --driver-memory 1g \\
  --conf spark.ui.enabled=false \\
  --conf spark.eventLog.enabled=true \\
  --conf "spark.eventLog.dir=$event_log_dir" \\
  --conf spark.hadoop.fs.s3a.aws.credentials.provider={S3A_CREDENTIALS_PROVIDER} \\
  "$script" "$@"
"""

# CPU and memory per step (request, limit), sized for the dev Minikube profile.
RESOURCES = {
    "prepare-data": {"cpu": ("500m", "2"), "memory": ("1536Mi", "2Gi")},
    "train": {"cpu": ("250m", "1"), "memory": ("512Mi", "1Gi")},
    "deploy": {"cpu": ("100m", "500m"), "memory": ("128Mi", "512Mi")},
}


@dsl.container_component
def prepare_data(run_id: str, rows: int, event_log_dir: str, dataset_dir: dsl.OutputPath(str)):
    """Write a synthetic labelled dataset as CSV to the shared-data volume with PySpark."""
    return dsl.ContainerSpec(
        image=SPARK_IMAGE_UNSET,
        command=["sh", "-ec", SPARK_SUBMIT, PREPARE_DATA_SOURCE],
        args=[
            event_log_dir,
            "--output", dsl.ConcatPlaceholder([f"{SHARED_DATA[1]}/pipelines/{PIPELINE_NAME}/", run_id, "/dataset"]),
            "--rows", rows,
            "--output-path-file", dataset_dir,
        ],
    )


@dsl.component(base_image=PYTHON_IMAGE, packages_to_install=TRAIN_PACKAGES)
def train(
    dataset_dir: str,
    model_name: str,
    run_id: str,
    iterations: int,
    shared_data_claim: str,
    shared_data_path: str,
    metrics: dsl.Output[dsl.Metrics],
) -> NamedTuple("TrainOutputs", [("storage_uri", str), ("tensorboard_dir", str)]):
    """Train a classifier on the CSV dataset; save model.joblib and TensorBoard logs on shared-data."""
    import csv
    import glob
    import os
    import warnings
    from collections import namedtuple

    import joblib
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from tensorboardX import SummaryWriter

    os.umask(0o002)  # what this step creates on the shared volume stays writable for its group
    parts = sorted(glob.glob(os.path.join(dataset_dir, "part-*.csv")))
    if not parts:
        raise FileNotFoundError(f"no part-*.csv files in {dataset_dir}")
    rows = []
    for part in parts:
        with open(part, newline="") as file:
            reader = csv.reader(file)
            header = next(reader)
            rows += [[float(value) for value in row] for row in reader]
    if header[-1] != "label":
        raise ValueError(f"{dataset_dir}: last column is {header[-1]!r}, expected 'label'")
    data = np.asarray(rows)
    features, labels = data[:, :-1], data[:, -1].astype(int)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=0, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    splits = {"train": (scaler.transform(x_train), y_train), "test": (scaler.transform(x_test), y_test)}

    # One L-BFGS iteration per fit, continued from the last (warm_start), so TensorBoard shows the
    # curve. Logistic regression rather than SGD: KServe's sklearn runtime loads models through a
    # restricted unpickler, and SGDClassifier pickles a Cython loss object it refuses.
    classifier = LogisticRegression(max_iter=1, warm_start=True)
    tensorboard_dir = os.path.join(shared_data_path, "tensorboard", model_name, run_id)
    with SummaryWriter(logdir=tensorboard_dir) as writer:
        for step in range(1, iterations + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                classifier.fit(*splits["train"])
            for split, (x, y) in splits.items():
                probabilities = classifier.predict_proba(x)
                writer.add_scalar(f"loss/{split}", log_loss(y, probabilities, labels=classifier.classes_), step)
                writer.add_scalar(f"accuracy/{split}", accuracy_score(y, classifier.predict(x)), step)

    model = make_pipeline(scaler, classifier)
    accuracy = float(accuracy_score(y_test, model.predict(x_test)))
    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("rows", len(labels))
    print(f"test accuracy {accuracy:.3f} on {len(y_test)} rows; TensorBoard logs in {tensorboard_dir}")

    relative = os.path.join("models", model_name, run_id)
    os.makedirs(os.path.join(shared_data_path, relative), exist_ok=True)
    joblib.dump(model, os.path.join(shared_data_path, relative, "model.joblib"))
    outputs = namedtuple("TrainOutputs", ["storage_uri", "tensorboard_dir"])
    return outputs(f"pvc://{shared_data_claim}/{relative}", tensorboard_dir)


@dsl.component(base_image=PYTHON_IMAGE, packages_to_install=DEPLOY_PACKAGES, additional_funcs=[inference_service])
def deploy(model_name: str, namespace: str, storage_uri: str, timeout_seconds: int) -> str:
    """Create or replace the InferenceService and wait until it is Ready; returns its URL."""
    import time

    from kubernetes import client, config

    # `inference_service` runs here from its own source, which kfp embeds next to this function.
    manifest = inference_service(model_name, namespace, storage_uri)
    config.load_incluster_config()
    api = client.CustomObjectsApi()
    group, version = manifest["apiVersion"].split("/")
    where = {"group": group, "version": version, "namespace": namespace, "plural": "inferenceservices"}
    try:
        current = api.get_namespaced_custom_object(name=model_name, **where)
    except client.ApiException as error:
        if error.status != 404:
            raise
        applied = api.create_namespaced_custom_object(body=manifest, **where)
        print(f"created InferenceService {namespace}/{model_name} serving {storage_uri}")
    else:
        manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        applied = api.replace_namespaced_custom_object(name=model_name, body=manifest, **where)
        print(f"replaced InferenceService {namespace}/{model_name}: now serving {storage_uri}")
    # Ready only counts once the controller has seen this spec, not the previous model's.
    generation = applied["metadata"]["generation"]

    deadline = time.monotonic() + timeout_seconds
    while True:
        status = api.get_namespaced_custom_object(name=model_name, **where).get("status", {})
        ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
        if status.get("observedGeneration", 0) >= generation and ready.get("status") == "True":
            print(f"InferenceService {namespace}/{model_name} is Ready at {status.get('url')}")
            return status.get("url", "")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"InferenceService {namespace}/{model_name} not Ready after {timeout_seconds}s: "
                f"{ready.get('reason')}: {ready.get('message')}"
            )
        time.sleep(5)


def _budget(task: dsl.PipelineTask, step: str) -> dsl.PipelineTask:
    cpu, memory = RESOURCES[step]["cpu"], RESOURCES[step]["memory"]
    return (
        task.set_cpu_request(cpu[0]).set_cpu_limit(cpu[1])
        .set_memory_request(memory[0]).set_memory_limit(memory[1])
    )


def _mount(task: dsl.PipelineTask, *volumes: tuple[str, str]) -> None:
    for claim, path in volumes:
        kubernetes.mount_pvc(task, pvc_name=claim, mount_path=path)


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Prepare data with Spark, train a scikit-learn classifier with TensorBoard logs, "
    "serve it with KServe.",
)
def train_and_serve(
    spark_image: str,
    serving_namespace: str = "models",
    model_name: str = "example-classifier",
    rows: int = 10000,
    iterations: int = 20,
    spark_event_log_dir: str = SPARK_EVENT_LOG_DIR,
):
    """`spark_image`: the stack's Spark image, exactly as built (`pulumi stack output spark_image`).

    `spark_event_log_dir`: where the stack's history server reads (`pulumi stack output
    spark_event_log_dir`); the default is the event-log volume of Minikube and existing clusters.

    `serving_namespace` needs the `shared-data` claim (the model is read from it) and the run's
    service account needs rights on InferenceServices there.
    """
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER

    prepare = prepare_data(run_id=run_id, rows=rows, event_log_dir=spark_event_log_dir).set_container_image(spark_image)
    _budget(prepare, "prepare-data")
    _mount(prepare, SHARED_DATA, SPARK_EVENT_LOGS)
    kubernetes.set_security_context(prepare, run_as_user=SPARK_UID, run_as_group=SHARED_GROUP, run_as_non_root=True)

    trained = train(
        dataset_dir=prepare.outputs["dataset_dir"],
        model_name=model_name,
        run_id=run_id,
        iterations=iterations,
        shared_data_claim=SHARED_DATA[0],
        shared_data_path=SHARED_DATA[1],
    )
    _budget(trained, "train")
    _mount(trained, SHARED_DATA)
    kubernetes.set_security_context(trained, run_as_user=PYTHON_UID, run_as_group=SHARED_GROUP, run_as_non_root=True)
    # No passwd entry for the uid: pip installs into $HOME/.local, which must be writable.
    trained.set_env_variable("HOME", "/tmp")

    deployed = deploy(
        model_name=model_name,
        namespace=serving_namespace,
        storage_uri=trained.outputs["storage_uri"],
        timeout_seconds=DEPLOY_TIMEOUT_SECONDS,
    )
    _budget(deployed, "deploy")
    kubernetes.set_security_context(deployed, run_as_user=PYTHON_UID, run_as_group=SHARED_GROUP, run_as_non_root=True)
    deployed.set_env_variable("HOME", "/tmp")
    deployed.set_caching_options(False)  # applying a resource is a side effect: never skip it


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compile the train-and-serve pipeline to a pipeline YAML.")
    parser.add_argument("--output", type=Path, default=Path("build/pipelines/train_and_serve.yaml"))
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=train_and_serve, package_path=str(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""The example Kubeflow pipeline (pipelines/): its compiled YAML, and the InferenceService it deploys.

The kfp SDK lives in its own virtualenv (`.venv-pipelines`: kfp needs protobuf 6, the stack's tools
protobuf 5), so the pipeline is compiled there, in a subprocess, exactly as `make pipeline` does,
and the YAML is read here. The InferenceService builder is a pure function without kfp; it is
checked against the KServe 0.20.0 CRD, and against the copy of itself the deploy step embeds.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from components.kubernetes_types import SHARED_GROUP, bytes_of, millicores_of
from components.spark import S3A_CREDENTIALS_PROVIDER, SPARK_UID
from components.storage import SHARED_VOLUMES
from pipelines.inference_service import inference_service
from tools.schemas import validate_manifest

ROOT = Path(__file__).resolve().parent.parent
VENV_PIPELINES = ROOT / ".venv-pipelines"
KUBERNETES_VERSION = "1.34.0"
KFP_VERSION = "2.17.3"
STEPS = ("prepare-data", "train", "deploy")
SPARK_IMAGE_PLACEHOLDER = "{{$.inputs.parameters['pipelinechannel--spark_image']}}"
RUN_ID = "{{$.pipeline_job_uuid}}"
SHARED_DATA = SHARED_VOLUMES["shared_data"]
EVENT_LOGS = SHARED_VOLUMES["event_logs"]
SCHEMES = ("pvc://", "s3://", "gs://", "https://")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, dict]:
    """(pipeline spec, Kubernetes platform spec) of the pipeline, compiled by the pinned kfp SDK."""
    target = f"{VENV_PIPELINES.name}/.installed"
    try:  # a no-op once the virtualenv is up to date with requirements-pipelines.txt
        install = subprocess.run(["make", "-s", target], cwd=ROOT, capture_output=True, text=True)
        problem = (install.stderr[-2000:] or f"exit status {install.returncode}") if install.returncode else ""
    except OSError as error:  # no make
        problem = str(error)
    if problem:
        reason = f"could not create {VENV_PIPELINES.name} (`make -s {target}`): {problem}"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must compile the pipeline, never skip it
        pytest.skip(reason)
    output = tmp_path_factory.mktemp("pipeline") / "train_and_serve.yaml"
    compile_ = subprocess.run(
        [str(VENV_PIPELINES / "bin" / "python"), "-m", "pipelines.train_and_serve", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True,
    )
    if compile_.returncode:
        pytest.fail(f"the pipeline does not compile:\n{compile_.stderr[-4000:]}")
    pipeline_spec, platform_spec = yaml.safe_load_all(output.read_text())
    return pipeline_spec, platform_spec


def tasks(compiled) -> dict:
    return compiled[0]["root"]["dag"]["tasks"]


def executor(compiled, step: str) -> dict:
    spec = compiled[0]
    label = spec["components"][tasks(compiled)[step]["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


def platform(compiled, step: str) -> dict:
    spec = compiled[0]
    label = spec["components"][tasks(compiled)[step]["componentRef"]["name"]]["executorLabel"]
    return compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"].get(label, {})


def program(compiled, step: str) -> str:
    """The Python source a lightweight step runs (kfp's command: install, runner, then the program)."""
    return executor(compiled, step)["command"][-1]


# --- the DAG ------------------------------------------------------------------------------------


def test_steps_run_in_order_each_fed_by_the_one_before(compiled):
    dag = tasks(compiled)
    assert set(dag) == set(STEPS)
    assert "dependentTasks" not in dag["prepare-data"]
    assert dag["train"]["dependentTasks"] == ["prepare-data"]
    assert dag["deploy"]["dependentTasks"] == ["train"]
    assert dag["train"]["inputs"]["parameters"]["dataset_dir"] == {
        "taskOutputParameter": {"producerTask": "prepare-data", "outputParameterKey": "dataset_dir"}
    }
    assert dag["deploy"]["inputs"]["parameters"]["storage_uri"] == {
        "taskOutputParameter": {"producerTask": "train", "outputParameterKey": "storage_uri"}
    }
    assert dag["deploy"]["inputs"]["parameters"]["namespace"] == {"componentInputParameter": "serving_namespace"}
    for step in ("train", "deploy"):
        assert dag[step]["inputs"]["parameters"]["model_name"] == {"componentInputParameter": "model_name"}


def test_data_and_model_live_under_the_run_on_the_shared_volume(compiled):
    """Two runs must never overwrite each other's dataset, model or logs."""
    dag = tasks(compiled)
    for step in ("prepare-data", "train"):
        assert dag[step]["inputs"]["parameters"]["run_id"] == {"runtimeValue": {"constant": RUN_ID}}
    train = dag["train"]["inputs"]["parameters"]
    assert train["shared_data_claim"] == {"runtimeValue": {"constant": SHARED_DATA[0]}}
    assert train["shared_data_path"] == {"runtimeValue": {"constant": SHARED_DATA[1]}}
    output = executor(compiled, "prepare-data")["args"]
    concat = yaml.safe_load(output[output.index("--output") + 1])["Concat"]
    assert concat == [f"{SHARED_DATA[1]}/pipelines/train-and-serve/", "{{$.inputs.parameters['run_id']}}", "/dataset"]


def test_deploy_always_runs(compiled):
    """A cached deploy would skip applying the InferenceService and leave the old model served."""
    assert not tasks(compiled)["deploy"]["cachingOptions"].get("enableCache", False)


# --- parameters ---------------------------------------------------------------------------------


def test_pipeline_parameters(compiled):
    """The Spark image is required: the stack builds it and tags it by content, there is no default."""
    assert compiled[0]["root"]["inputDefinitions"]["parameters"] == {
        "spark_image": {"parameterType": "STRING"},
        "serving_namespace": {"parameterType": "STRING", "defaultValue": "models", "isOptional": True},
        "model_name": {"parameterType": "STRING", "defaultValue": "example-classifier", "isOptional": True},
        "rows": {"parameterType": "NUMBER_INTEGER", "defaultValue": 10000.0, "isOptional": True},
        "iterations": {"parameterType": "NUMBER_INTEGER", "defaultValue": 20.0, "isOptional": True},
        "spark_event_log_dir": {"parameterType": "STRING", "defaultValue": f"file://{EVENT_LOGS[1]}", "isOptional": True},
    }
    assert compiled[0]["pipelineInfo"]["name"] == "train-and-serve"
    assert compiled[0]["sdkVersion"] == f"kfp-{KFP_VERSION}"


# --- images and what runs in them ---------------------------------------------------------------


def test_spark_step_runs_on_the_spark_image_parameter(compiled):
    assert executor(compiled, "prepare-data")["image"] == SPARK_IMAGE_PLACEHOLDER
    assert tasks(compiled)["prepare-data"]["inputs"]["parameters"]["pipelinechannel--spark_image"] == {
        "componentInputParameter": "spark_image"
    }


def test_other_images_are_pinned_to_a_release(compiled):
    for step in ("train", "deploy"):
        image = executor(compiled, step)["image"]
        match = re.fullmatch(r"[a-z0-9./_-]+:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*)", image)
        assert match, f"{step}: image {image!r} has no tag"
        assert match["tag"] != "latest"
        assert re.match(r"\d+\.\d+\.\d+", match["tag"]), f"{step}: {image!r} is not pinned to a patch release"


def test_every_package_a_step_installs_is_pinned(compiled):
    for step, expected in (("train", "scikit-learn"), ("deploy", "kubernetes")):
        install = executor(compiled, step)["command"][2]
        requirements = [
            r for r in re.findall(r"'([^']+)'", install)
            if not r.startswith("--") and 'python_version<"3.9"' not in r  # kfp's own, never on 3.12
        ]
        assert requirements, f"{step}: no packages found in {install!r}"
        for requirement in requirements:
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.]+", requirement), f"{step}: {requirement!r} is not pinned"
        names = {r.split("==")[0].lower() for r in requirements}
        assert expected in names
        assert f"kfp=={KFP_VERSION}" in requirements, "the step's kfp runtime must match the compiler"


def test_spark_step_runs_the_pyspark_job_in_local_mode(compiled):
    container = executor(compiled, "prepare-data")
    shell, program_text = container["command"][2], container["command"][3]
    assert container["command"][:2] == ["sh", "-ec"]
    assert program_text == (ROOT / "pipelines" / "prepare_data.py").read_text()
    assert "/opt/spark/bin/spark-submit" in shell
    assert "--master 'local[*]'" in shell
    # The event log goes where the history server reads: the parameter, passed as the script's first argument.
    assert '--conf "spark.eventLog.dir=$event_log_dir"' in shell and 'event_log_dir="$1"\nshift\n' in shell
    assert container["args"][0] == "{{$.inputs.parameters['event_log_dir']}}"
    assert tasks(compiled)["prepare-data"]["inputs"]["parameters"]["event_log_dir"] == {
        "componentInputParameter": "spark_event_log_dir"
    }
    # On S3 (EKS) S3A uses the pod's IRSA token, as the stack's own drivers do.
    assert f"spark.hadoop.fs.s3a.aws.credentials.provider={S3A_CREDENTIALS_PROVIDER} " in shell
    assert container["args"][container["args"].index("--output-path-file") + 1] == (
        "{{$.outputs.parameters['dataset_dir'].output_file}}"
    )


# --- volumes, identity and resources ------------------------------------------------------------


def test_shared_volumes_are_mounted_where_the_platform_mounts_them(compiled):
    expected = {"prepare-data": [SHARED_DATA, EVENT_LOGS], "train": [SHARED_DATA], "deploy": []}
    for step, volumes in expected.items():
        mounts = platform(compiled, step).get("pvcMount", [])
        assert [(m["constant"], m["mountPath"]) for m in mounts] == volumes, step
        for mount in mounts:
            assert mount["pvcNameParameter"] == {"runtimeValue": {"constant": mount["constant"]}}


def test_steps_run_as_non_root_in_the_shared_group(compiled):
    """Group 100 owns the shared volumes; a step in another group cannot write there."""
    for step in STEPS:
        context = platform(compiled, step)["securityContext"]
        assert context["runAsNonRoot"] is True, step
        assert int(context["runAsGroup"]) == SHARED_GROUP, step
        assert int(context["runAsUser"]) > 0, step
    assert int(platform(compiled, "prepare-data")["securityContext"]["runAsUser"]) == SPARK_UID


def test_every_step_has_cpu_and_memory_requests_within_limits(compiled):
    for step in STEPS:
        resources = executor(compiled, step)["resources"]
        cpu = [millicores_of(resources["resourceCpuRequest"]), millicores_of(resources["resourceCpuLimit"])]
        memory = [bytes_of(resources["resourceMemoryRequest"]), bytes_of(resources["resourceMemoryLimit"])]
        assert 0 < cpu[0] <= cpu[1], f"{step}: cpu {resources}"
        assert 0 < memory[0] <= memory[1], f"{step}: memory {resources}"


# --- the InferenceService -----------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize("scheme", SCHEMES)
def test_inference_service_validates_against_the_kserve_crd(scheme):
    manifest = inference_service("example-classifier", "models", f"{scheme}shared-data/models/example-classifier/run")
    assert validate_manifest(manifest, KUBERNETES_VERSION) == []


def test_inference_service_serves_the_sklearn_model_from_the_uri():
    manifest = inference_service("example-classifier", "models", "pvc://shared-data/models/example-classifier/1")
    assert (manifest["apiVersion"], manifest["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert manifest["metadata"]["name"] == "example-classifier"
    assert manifest["metadata"]["namespace"] == "models"
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "sklearn"}
    assert model["storageUri"] == "pvc://shared-data/models/example-classifier/1"
    assert millicores_of(model["resources"]["requests"]["cpu"]) <= millicores_of(model["resources"]["limits"]["cpu"])
    assert bytes_of(model["resources"]["requests"]["memory"]) <= bytes_of(model["resources"]["limits"]["memory"])


@pytest.mark.parametrize(
    "uri",
    [
        "http://models.example.com/model.joblib",
        "file:///mnt/shared-data/models/example/model.joblib",
        "/mnt/shared-data/models/example/model.joblib",
        "ftp://models.example.com/model.joblib",
        "hdfs://namenode/models/example",
        "PVC://shared-data/models/example",
        "pvc://",
        "",
    ],
)
def test_inference_service_refuses_an_unsupported_model_uri(uri):
    with pytest.raises(ValueError) as error:
        inference_service("example-classifier", "models", uri)
    message = str(error.value)
    assert repr(uri) in message
    for scheme in SCHEMES:
        assert scheme in message


@pytest.mark.parametrize("name", ["Example", "1model", "model-", "model_1", "m" * 64, ""])
def test_inference_service_refuses_a_name_kserve_cannot_use(name):
    with pytest.raises(ValueError, match="DNS-1035"):
        inference_service(name, "models", "pvc://shared-data/models/x")


def test_inference_service_refuses_a_bad_namespace():
    with pytest.raises(ValueError, match="namespace 'Models'"):
        inference_service("example-classifier", "Models", "pvc://shared-data/models/x")


def test_deploy_step_runs_the_tested_inference_service(compiled):
    """The deploy step embeds `inference_service`'s source; run that copy alone, as the step does,
    and it must build the same manifests and refuse the same URIs as the function tested above."""
    tree = ast.parse(program(compiled, "deploy"))
    (function,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "inference_service"]
    namespace: dict = {}
    exec(compile(ast.Module(body=[function], type_ignores=[]), "deploy-step", "exec"), namespace)
    embedded = namespace["inference_service"]
    for args in [
        ("example-classifier", "models", "pvc://shared-data/models/example-classifier/run"),
        ("iris", "serving", "s3://bucket/models/iris"),
        ("m", "default", "https://models.example.com/model.joblib"),
    ]:
        assert embedded(*args) == inference_service(*args)
    for bad in ["file:///mnt/model.joblib", "http://x/y"]:
        with pytest.raises(ValueError) as ours:
            inference_service("example-classifier", "models", bad)
        with pytest.raises(ValueError) as theirs:
            embedded("example-classifier", "models", bad)
        assert str(theirs.value) == str(ours.value)
    assert "inference_service(model_name, namespace, storage_uri)" in program(compiled, "deploy")

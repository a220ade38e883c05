"""The KServe InferenceService the example pipeline's deploy step applies, as a pure function.

`inference_service()` is self-contained on purpose: no module-level names, imports inside. The
deploy step is a KFP lightweight component, which runs the *source text* of its function in a
bare `python` image where this project is not installed; kfp copies this function's source into
that step verbatim (`additional_funcs=[inference_service]`). So the function the tests validate
against the KServe CRD is, character for character, the one the pipeline runs — nothing to keep in
step by hand. This module must stay importable without kfp: the tests run in the main virtualenv.
"""


def inference_service(name: str, namespace: str, storage_uri: str) -> dict:
    """A `serving.kserve.io/v1beta1` InferenceService serving the scikit-learn model at `storage_uri`.

    `storage_uri` is where KServe's storage initializer fetches the model from: a directory holding
    `model.joblib` (or the file itself) as `pvc://<claim>/<path>`, `s3://`, `gs://` or `https://`.
    Anything else is refused here rather than by a predictor pod that never becomes ready.
    """
    import re

    # Kept inside the function: the deploy step runs this function's source alone (see module doc).
    schemes = ("pvc://", "s3://", "gs://", "https://")
    if not any(storage_uri.startswith(s) and len(storage_uri) > len(s) for s in schemes):
        raise ValueError(
            f"model storage URI {storage_uri!r} is not supported: use one of {', '.join(schemes)} "
            "followed by a path (e.g. pvc://shared-data/models/example/model.joblib)"
        )
    # KServe derives Service and Deployment names from it, so it must be a DNS-1035 label.
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise ValueError(
            f"InferenceService name {name!r} is not a DNS-1035 label: lower-case letters, digits "
            "and '-', starting with a letter, at most 63 characters"
        )
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise ValueError(f"namespace {namespace!r} is not a DNS-1123 label")
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/component": "model",
                "app.kubernetes.io/part-of": "dataplatform",
                "app.kubernetes.io/managed-by": "kubeflow-pipelines",
            },
        },
        "spec": {
            "predictor": {
                # One replica: a laptop-sized budget; raise it for real traffic.
                "minReplicas": 1,
                "maxReplicas": 1,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": storage_uri,
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"cpu": "1", "memory": "1Gi"},
                    },
                },
            }
        },
    }

"""Container images: Dockerfile versions and users agree with the stack, tags follow content, pods run the built image.

Ground truth: Dockerfile semantics (an `ARG` default, `${VAR}` substitution in `FROM` and `USER`),
Kubernetes' `runAsNonRoot` (the kubelet can only verify a numeric, non-zero image user), and the
rule that a `:latest` (or missing) tag makes `IfNotPresent` pods run whatever happens to be cached.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from components.images import IMAGES_DIR, content_tag
from components.jupyterhub import NOTEBOOK_UID
from components.kubernetes_types import SHARED_GROUP
from components.spark import SPARK_UID, SPARK_VERSION
from tools import offline

IMAGE = "docker:index/image:Image"
SPARK_APPLICATION = "kubernetes:sparkoperator.k8s.io/v1beta2:SparkApplication"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
FOLDERS = ["spark", "notebook"]

_recordings: dict[str, offline.Recording] = {}


class Dockerfile:
    """The instructions of a Dockerfile, with ARG defaults for `${VAR}` substitution."""

    def __init__(self, path: Path):
        text = re.sub(r"\\\n", " ", path.read_text())
        self.instructions: list[tuple[str, str]] = []
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keyword, _, rest = line.partition(" ")
                self.instructions.append((keyword.upper(), rest.strip()))
        self.args: dict[str, str] = {}
        for keyword, rest in self.instructions:
            if keyword == "ARG" and "=" in rest:
                name, _, default = rest.partition("=")
                self.args.setdefault(name.strip(), default.strip().strip('"'))

    def all(self, keyword: str) -> list[str]:
        return [rest for k, rest in self.instructions if k == keyword]

    def resolve(self, value: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m.group(1) or m.group(2), m.group(0)), value)


def dockerfile(folder: str) -> Dockerfile:
    return Dockerfile(IMAGES_DIR / folder / "Dockerfile")


@pytest.fixture
def dev(run_stack) -> offline.Recording:
    if "dev" not in _recordings:
        _recordings["dev"] = run_stack("dev")
    return _recordings["dev"]


def built_image(recording: offline.Recording, folder: str) -> offline.Registration:
    [image] = [i for i in recording.of_type(IMAGE) if Path(i.plain_inputs["build"]["context"]).name == folder]
    return image


def has_tag(reference: str) -> bool:
    """`repo[:port]/name:tag` (a digest would do too)."""
    return "@sha256:" in reference or ":" in reference.rsplit("/", 1)[-1]


# --- Dockerfiles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", FOLDERS)
def test_spark_version_arg_matches_the_stack(folder):
    """`docker build` without args builds the Spark release the stack configures and the SparkApplication names."""
    assert dockerfile(folder).args["SPARK_VERSION"] == SPARK_VERSION


def test_both_images_run_the_same_java_major():
    """The notebook's driver JVM and the executors' JVM are the same major version."""
    assert dockerfile("spark").args["JAVA_VERSION"] == dockerfile("notebook").args["JAVA_VERSION"]


@pytest.mark.parametrize("folder, uid", [("spark", SPARK_UID), ("notebook", NOTEBOOK_UID)])
def test_last_user_is_numeric_and_non_root(folder, uid):
    """runAsNonRoot can only verify a numeric user; it is the uid the pods' securityContext names."""
    image = dockerfile(folder)
    users = image.all("USER")
    assert users, f"images/{folder}/Dockerfile has no USER"
    user = image.resolve(users[-1]).split(":")[0]
    assert user.isdigit(), f"last USER {users[-1]!r} is not numeric"
    assert int(user) != 0
    assert int(user) == uid


def test_notebook_user_is_in_the_shared_group():
    """The notebook user's primary group is the one the shared volumes are writable by."""
    assert int(dockerfile("notebook").args["NB_GID"]) == SHARED_GROUP


@pytest.mark.parametrize("folder", FOLDERS)
def test_base_images_are_pinned(folder):
    """No `latest`, explicit or implied, in any FROM line."""
    image = dockerfile(folder)
    froms = image.all("FROM")
    assert froms
    for line in froms:
        reference = image.resolve(line.split()[0])
        assert "$" not in reference, f"unresolved ARG in FROM {line!r}"
        assert has_tag(reference), f"FROM {reference} has no tag (means latest)"
        assert "latest" not in reference.lower(), reference


@pytest.mark.parametrize("folder", FOLDERS)
def test_header_names_the_build_command(folder):
    first = (IMAGES_DIR / folder / "Dockerfile").read_text().splitlines()[0]
    assert first.startswith("# docker build ") and f"images/{folder}" in first


# --- content tags ---------------------------------------------------------------------------------


@pytest.fixture
def context(tmp_path) -> Path:
    root = tmp_path / "context"
    (root / "conf").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM python:3.12-slim\nUSER 1000\n")
    (root / "conf" / "app.conf").write_text("a = 1\n")
    return root


def test_content_tag_is_stable(context, tmp_path):
    """Same files and args, same tag: an unchanged image is not rebuilt or rolled out."""
    args = {"SPARK_VERSION": "4.2.0", "JAVA_VERSION": "17"}
    tag = content_tag(context, args)
    assert content_tag(context, dict(reversed(args.items()))) == tag
    copy = tmp_path / "elsewhere"
    shutil.copytree(context, copy)
    assert content_tag(copy, args) == tag  # another checkout of the same files
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag)  # a valid Docker tag
    assert tag != "latest"


def test_content_tag_follows_file_changes(context):
    args = {"SPARK_VERSION": "4.2.0"}
    tag = content_tag(context, args)
    (context / "conf" / "app.conf").write_text("a = 2\n")
    changed = content_tag(context, args)
    assert changed != tag
    (context / "conf" / "extra.conf").write_text("")
    added = content_tag(context, args)
    assert added != changed
    (context / "conf" / "extra.conf").rename(context / "conf" / "renamed.conf")
    assert content_tag(context, args) != added


def test_content_tag_follows_build_args(context):
    assert content_tag(context, {"SPARK_VERSION": "4.2.0"}) != content_tag(context, {"SPARK_VERSION": "4.1.0"})
    assert content_tag(context, {"SPARK_VERSION": "4.2.0"}) != content_tag(context, {})


# --- the stack's images -----------------------------------------------------------------------------


@pytest.mark.parametrize("folder", FOLDERS)
def test_stack_tags_images_by_content(dev, folder):
    """The tag is the content hash of exactly what is built, with exactly the args it is built with."""
    image = built_image(dev, folder).plain_inputs
    build = image["build"]
    assert Path(build["context"]) == IMAGES_DIR / folder
    assert build["args"]["SPARK_VERSION"] == SPARK_VERSION
    assert image["imageName"].rsplit(":", 1)[1] == content_tag(Path(build["context"]), build["args"])


def test_pods_run_the_built_images(dev):
    """Every pod spec names the reference the docker Image reports, so a rebuild rolls them out."""
    spark = built_image(dev, "spark").plain_inputs["imageName"]
    notebook = built_image(dev, "notebook").plain_inputs["imageName"]

    [app] = dev.of_type(SPARK_APPLICATION)
    assert app.plain_inputs["spec"]["image"] == spark
    [history] = [d for d in dev.of_type(DEPLOYMENT) if d.plain_inputs["metadata"]["name"] == "spark-history-server"]
    assert {c["image"] for c in history.plain_inputs["spec"]["template"]["spec"]["containers"]} == {spark}
    [defaults] = dev.of_type(CONFIG_MAP)
    assert f"spark.kubernetes.container.image {spark}\n" in defaults.plain_inputs["data"]["spark-defaults.conf"]
    [hub] = [c for c in dev.charts() if c.plain_inputs["chart"] == "jupyterhub"]
    singleuser = hub.plain_inputs["values"]["singleuser"]["image"]
    assert f"{singleuser['name']}:{singleuser['tag']}" == notebook
    assert dev.outputs["spark_image"] == spark and dev.outputs["notebook_image"] == notebook


def test_no_image_reference_is_latest(dev):
    """With imagePullPolicy IfNotPresent a `latest` (or untagged) reference would never pick up a rebuild."""
    references = [i.plain_inputs["imageName"] for i in dev.of_type(IMAGE)]
    references.append(dev.of_type(SPARK_APPLICATION)[0].plain_inputs["spec"]["image"])
    for deployment in dev.of_type(DEPLOYMENT):
        references += [c["image"] for c in deployment.plain_inputs["spec"]["template"]["spec"]["containers"]]
    [hub] = [c for c in dev.charts() if c.plain_inputs["chart"] == "jupyterhub"]
    singleuser = hub.plain_inputs["values"]["singleuser"]["image"]
    references.append(f"{singleuser['name']}:{singleuser['tag']}")
    assert len(references) >= 5
    for reference in references:
        assert has_tag(reference), reference
        assert not reference.endswith(":latest"), reference

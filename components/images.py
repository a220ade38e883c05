"""Container images the platform builds from `images/<name>/Dockerfile`.

Each image is tagged by the hash of its build context and build args, never `latest`: the tag
changes exactly when the image would, and the reference `docker.Image` reports after the build is
what every pod that runs it uses. On Minikube the build goes into the profile's own Docker daemon
and is never pushed; elsewhere it is pushed to the configured registry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi
import pulumi_docker as docker
from pydantic import BaseModel, ConfigDict

from components.cluster import ImageDelivery

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"


def content_tag(context: Path, build_args: dict[str, str]) -> str:
    """A tag that names the build context's files and the build args: same inputs, same tag."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for key in sorted(build_args):
        digest.update(f"{key}={build_args[key]}\0".encode())
    return digest.hexdigest()[:16]


class ContainerImageArgs(BaseModel):
    """One image: the folder under `images/` and the build args (versions) it is built with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: str
    build_args: dict[str, str]

    def repository(self, registry: str | None) -> str:
        return f"{registry}/{self.folder}" if registry else f"dataplatform/{self.folder}"

    def reference(self, registry: str | None, platform: str | None = None) -> str:
        """`repository:tag`, the tag derived from the build context's content (and the target
        platform, when one is set: an arm64 and an amd64 build are different images)."""
        tag = content_tag(IMAGES_DIR / self.folder, {**self.build_args, **({"platform": platform} if platform else {})})
        return f"{self.repository(registry)}:{tag}"


class ContainerImage(pulumi.ComponentResource):
    """An image built from `images/<folder>` and delivered to the cluster."""

    reference: pulumi.Output[str]
    """The built image's `repository:tag`, to be used by every pod that runs it."""

    def __init__(
        self,
        name: str,
        args: ContainerImageArgs,
        delivery: ImageDelivery,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("dataplatform:images:ContainerImage", name, None, opts)
        context = IMAGES_DIR / args.folder
        image = docker.Image(
            f"{name}-image",
            # The registry can be an Output (ECR's account ID is known once its repositories exist).
            image_name=pulumi.Output.from_input(delivery.registry).apply(lambda registry: args.reference(registry, delivery.platform)),
            build=docker.DockerBuildArgs(
                context=str(context),
                dockerfile=str(context / "Dockerfile"),
                args=args.build_args,
                platform=delivery.platform,
            ),
            skip_push=delivery.registry is None,
            registry=delivery.credentials,
            opts=pulumi.ResourceOptions(parent=self, provider=delivery.docker_provider),
        )
        self.reference = image.image_name
        self.register_outputs({"reference": self.reference})

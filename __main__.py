"""dataplatform: a data and ML platform on Kubernetes, one typed config per environment.

Table of contents: validate the config, build the components in dependency order, export.
"""

import pulumi

from components.cloud_storage import CloudStorage, CloudStorageArgs
from components.cluster import ExistingCluster, MinikubeCluster, MinikubeClusterConfig
from components.eks import EksCluster, EksClusterConfig
from components.images import ContainerImage, ContainerImageArgs
from components.jupyterhub import NOTEBOOK_SERVICE_ACCOUNT, JupyterHub
from components.pipelines import KFP_NAMESPACE, PIPELINE_RUNNER, PIPELINE_VOLUMES, KubeflowPipelines
from components.serving import ModelServing
from components.spark import (
    HISTORY_SERVER_SERVICE_ACCOUNT,
    SHARED_VOLUME_EVENT_LOG,
    S3EventLog,
    SparkOnKubernetes,
    SparkS3Roles,
    shared_volumes_for,
    spark_build_args,
)
from components.stack import ConfigError, load_stack_config
from components.storage import PlatformStorage, shared_directories
from components.tensorboard import TENSORBOARD_VERSION, TensorBoard

try:
    config = load_stack_config()
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None

if isinstance(config.cluster, MinikubeClusterConfig):
    cluster = MinikubeCluster("cluster", config.cluster, host_dirs=shared_directories(config.storage))
elif isinstance(config.cluster, EksClusterConfig):
    cluster = EksCluster("cluster", config.cluster, image_repositories=["spark", "notebook", "tensorboard"])
else:
    cluster = ExistingCluster("cluster", config.cluster)
on_cluster = pulumi.ResourceOptions(providers=[cluster.provider])

# On EKS the event logs, data and artifacts live in S3, reached through IRSA roles; elsewhere the
# event logs are on the shared event-log volume.
cloud_storage = None
spark_event_log = SHARED_VOLUME_EVENT_LOG
spark_s3_roles = notebook_role_arn = None
if isinstance(cluster, EksCluster):
    cloud_storage = CloudStorage(
        "cloud-storage",
        CloudStorageArgs(
            storage_class=config.storage.class_name,
            buckets=config.cluster.buckets,
            shared_backend=config.storage.shared_backend,
        ),
        cluster.aws_provider,
        partition=cluster.partition,
        efs_file_system_id=cluster.efs_file_system_id,
        opts=on_cluster,
    )
    spark_event_log = S3EventLog(cloud_storage.event_log_dir, region=config.cluster.region)
    spark_ns = config.spark.namespace
    spark_s3_roles = SparkS3Roles(
        driver=cluster.service_account_role(
            "spark-driver", spark_ns, config.spark.driver_service_account, cloud_storage.spark_policy
        ).arn,
        executor=cluster.service_account_role(
            "spark-executor", spark_ns, config.spark.executor_service_account, cloud_storage.spark_policy
        ).arn,
        history_server=cluster.service_account_role(
            "spark-history-server", spark_ns, HISTORY_SERVER_SERVICE_ACCOUNT, cloud_storage.history_server_policy
        ).arn,
    )
    notebook_role_arn = cluster.service_account_role(
        "notebook", config.jupyterhub.namespace, NOTEBOOK_SERVICE_ACCOUNT, cloud_storage.notebook_policy
    ).arn
spark_volumes = list(shared_volumes_for(spark_event_log))

storage = PlatformStorage(
    "storage",
    config.storage,
    provisioner=cluster.storage_provisioner,
    namespaces={
        config.spark.namespace: spark_volumes,
        config.jupyterhub.namespace: spark_volumes,
        **({config.tensorboard.namespace: ["shared_data"]} if config.tensorboard.enabled else {}),
        **({config.model_serving.serving_namespace: ["shared_data"]} if config.model_serving.enabled else {}),
        **({KFP_NAMESPACE: list(PIPELINE_VOLUMES)} if config.kubeflow_pipelines.enabled else {}),
    },
    storage_class=cloud_storage.storage_class if cloud_storage else None,
    efs_volume_handles=cloud_storage.efs_volume_handles if cloud_storage else None,
    opts=on_cluster,
)
spark_image = ContainerImage(
    "spark-image",
    ContainerImageArgs(folder="spark", build_args=spark_build_args(config.spark.version, spark_event_log)),
    cluster.images,
)
notebook_image = ContainerImage(
    "notebook-image",
    ContainerImageArgs(
        folder="notebook", build_args=spark_build_args(config.jupyterhub.notebook.pyspark_version, spark_event_log)
    ),
    cluster.images,
)
spark = SparkOnKubernetes(
    "spark",
    config.spark,
    image=spark_image.reference,
    pull_policy=cluster.images.pull_policy,
    storage=storage,
    event_log=spark_event_log,
    s3_roles=spark_s3_roles,
    opts=on_cluster,
)
jupyterhub = JupyterHub(
    "jupyterhub",
    config.jupyterhub,
    config.spark,
    notebook_image=notebook_image.reference,
    spark_image=spark_image.reference,
    pull_policy=cluster.images.pull_policy,
    service_type=cluster.service_type,
    storage=storage,
    spark_driver_role=spark.driver_role,
    spark_namespace=spark.namespace,
    spark_event_log=spark.event_log,
    notebook_role_arn=notebook_role_arn,
    opts=on_cluster,
)

if config.kubeflow_pipelines.enabled:
    kubeflow_pipelines = KubeflowPipelines(
        "kubeflow-pipelines",
        config.kubeflow_pipelines,
        service_type=cluster.service_type,
        storage=storage,
        pipeline_runner_role_arn=(
            cluster.service_account_role("pipeline-runner", KFP_NAMESPACE, PIPELINE_RUNNER, cloud_storage.pipelines_policy).arn
            if cloud_storage else None
        ),
        opts=on_cluster,
    )
    pulumi.export("kfp_ui_service", kubeflow_pipelines.ui_service)
    pulumi.export("kfp_api_url", kubeflow_pipelines.api_url)

if config.model_serving.enabled:
    model_serving = ModelServing(
        "model-serving",
        config.model_serving,
        storage=storage,
        # The example pipeline's last step rolls its model out as an InferenceService.
        deployers=[(KFP_NAMESPACE, PIPELINE_RUNNER)] if config.kubeflow_pipelines.enabled else [],
        opts=on_cluster,
    )
    pulumi.export("model_example_url", model_serving.example_url)

if config.tensorboard.enabled:
    tensorboard_image = ContainerImage(
        "tensorboard-image",
        ContainerImageArgs(folder="tensorboard", build_args={"TENSORBOARD_VERSION": TENSORBOARD_VERSION}),
        cluster.images,
    )
    tensorboard = TensorBoard(
        "tensorboard",
        config.tensorboard,
        image=tensorboard_image.reference,
        pull_policy=cluster.images.pull_policy,
        storage=storage,
        opts=on_cluster,
    )
    pulumi.export("tensorboard_url", tensorboard.url)

pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("kubernetes_version", cluster.kubernetes_version)
pulumi.export("spark_image", spark_image.reference)
pulumi.export("notebook_image", notebook_image.reference)
pulumi.export("spark_namespace", spark.namespace)
pulumi.export("spark_history_url", spark.history_url)
pulumi.export("spark_event_log_dir", spark.event_log.dir)
pulumi.export("jupyterhub_namespace", jupyterhub.namespace)
pulumi.export("jupyterhub_service", jupyterhub.proxy_service)
pulumi.export("jupyterhub_password", jupyterhub.user_password)
pulumi.export("jupyterhub_admin_password", jupyterhub.admin_password)

"""template.yaml against the contracts in docs/architecture.md and the layout in house_prices.naming."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from house_prices import http_api, naming
from house_prices.registry import LIVE_INDEX, LIVE_PARTITION_ATTRIBUTE, ROLLOUT_INDEX, ROLLOUT_PARTITION_ATTRIBUTE
from model_sync.gate import GatePolicy
from tests.pythons import find_python
from tests.sam_transform import decoded_template

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
BUCKET_NAME_SUB = "${BucketNamePrefix}-${AWS::AccountId}-${AWS::Region}"
# The API's contract: house_prices.http_api.ROUTES (the router and the OpenAPI document are built from it).
ROUTES = {(route.method, route.path) for route in http_api.ROUTES}
FUNCTIONS = {
    "RouterFunction": ("functions/router/", "router.handler.lambda_handler"),
    "ModelSyncFunction": ("functions/model_sync/", "model_sync.handler.lambda_handler"),
    "QualityFunction": ("functions/quality/", "quality.handler.lambda_handler"),
    "RolloutFunction": ("functions/rollouts/", "rollouts.handler.lambda_handler"),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decoded_template()


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]


def parameter_default(template: dict[str, Any], name: str) -> str:
    return str(template["Parameters"][name]["Default"])


def substitute(template: dict[str, Any], text: str) -> str:
    """Fill ${Param} with parameter defaults; pseudo parameters with fixed example values."""
    pseudo = {"AWS::AccountId": "123456789012", "AWS::Region": "us-east-1", "AWS::Partition": "aws"}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return pseudo[name] if name in pseudo else parameter_default(template, name)

    return re.sub(r"\$\{([A-Za-z0-9:]+)\}", value, text)


def contract_environment() -> dict[str, set[str]]:
    """Variable names per logical id, from the 'Function environment' table of docs/architecture.md."""
    text = ARCHITECTURE.read_text()
    section = text.split("### Function environment", 1)[1].split("\n#", 1)[0]
    variables: dict[str, set[str]] = {name: set() for name in FUNCTIONS}
    owner: str | None = None
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.lstrip().startswith("|") or (set(cells[0]) <= {"-", " "} and cells[0]):
            continue
        first = cells[0].strip("`")
        if first in FUNCTIONS or first in {"both", "every function"}:
            owner = first
        names = {n for n in re.findall(r"`([^`]+)`", cells[1]) if re.fullmatch(r"[A-Z][A-Z0-9_]+", n)}
        if owner is None or not names:
            continue
        for target in FUNCTIONS if owner in {"both", "every function"} else [owner]:
            variables[target] |= names
    return variables


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def sub_strings(node: Any) -> list[str]:
    found = []
    for _, value in walk(node):
        if isinstance(value, dict) and "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            found.append(sub if isinstance(sub, str) else sub[0])
    return found


def test_functions_use_the_contract_handlers_code_uris_and_layer(template: dict[str, Any]) -> None:
    """Given the contract, when reading each function, then CodeUri and Handler are exactly the contract's."""
    functions = resources(template, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    for name, (code_uri, handler) in FUNCTIONS.items():
        assert props(template, name)["CodeUri"] == code_uri
        assert props(template, name)["Handler"] == handler
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Tracing"] == "Active"
    assert globals_["Layers"] == [{"Ref": "CommonLayer"}]


def test_common_layer_is_built_by_sam_from_layers_common(template: dict[str, Any]) -> None:
    """Given the layer, then SAM builds it (BuildMethod) from layers/common/ and we ship no python/ folder."""
    layer = template["Resources"]["CommonLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert "build-CommonLayer:" in (ROOT / "layers" / "common" / "Makefile").read_text()
    assert not (ROOT / "layers" / "common" / "python").exists()
    assert (ROOT / "layers" / "common" / "requirements.txt").is_file()


# The router never carries numpy; model-sync carries numpy and packed_forest to validate and measure models.
@pytest.mark.parametrize(
    ("logical_id", "package", "beside"),
    [
        ("RouterFunction", "router", set()),
        ("ModelSyncFunction", "model_sync", {"packed_forest", "numpy", "numpy.libs"}),
        ("QualityFunction", "quality", set()),
        ("RolloutFunction", "rollouts", set()),
    ],
)
def test_function_builds_ship_their_package_with_bytecode(
    template: dict[str, Any], logical_id: str, package: str, beside: set[str], tmp_path: Path
) -> None:
    """Given a function built by its Makefile, then /var/task gets the package and .pyc (it is read-only)."""
    function = template["Resources"][logical_id]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    code_uri = ROOT / function["Properties"]["CodeUri"]
    python = find_python("3.13")
    if python is None:
        pytest.skip("python3.13 is not installed")
    # When SAM's makefile build runs it
    subprocess.run(
        ["make", "-s", "-C", str(code_uri), f"build-{logical_id}", f"ARTIFACTS_DIR={tmp_path}", f"PYTHON={python}"],
        check=True,
        timeout=120,
    )
    # Then the handler module and its bytecode are there, and nothing else (bar installed packages' metadata)
    assert (tmp_path / package / "handler.py").is_file()
    assert list((tmp_path / package / "__pycache__").glob("handler.cpython-313.pyc"))
    shipped = {path.name for path in tmp_path.iterdir() if not path.name.endswith(".dist-info")}
    assert shipped == {package} | beside


def test_function_environments_match_the_architecture_contract(template: dict[str, Any]) -> None:
    """Given the env table in docs/architecture.md, then each function sets exactly those variable names."""
    contract = contract_environment()
    assert contract["RouterFunction"] >= {"ENDPOINT_NAME", "REGISTRY_TABLE", "POWERTOOLS_SERVICE_NAME"}
    assert contract["ModelSyncFunction"] >= {"ARTIFACT_BUCKET", "MODEL_PREFIX", "QUALITY_GATE", "LOG_LEVEL"}
    for name in FUNCTIONS:
        variables = props(template, name)["Environment"]["Variables"]
        assert set(variables) == contract[name], name
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "HousePrices"


def test_router_routes_and_api_definition_agree(template: dict[str, Any]) -> None:
    """Given the router's HttpApi events, then they are the four routes, all on HttpApi, and the API's
    OpenAPI body declares the same routes, each with AuthType-conditioned IAM security."""
    events = props(template, "RouterFunction")["Events"]
    routes = set()
    for event in events.values():
        assert event["Type"] == "HttpApi"
        assert event["Properties"]["ApiId"] == {"Ref": "HttpApi"}
        routes.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
    assert routes == ROUTES

    api = props(template, "HttpApi")
    body_routes = {(method.upper(), path) for path, ops in api["DefinitionBody"]["paths"].items() for method in ops}
    assert body_routes == ROUTES
    for ops in api["DefinitionBody"]["paths"].values():
        for op in ops.values():
            assert op["security"] == {"Fn::If": ["UseIamAuth", [{"AWS_IAM": []}], {"Ref": "AWS::NoValue"}]}
    assert template["Conditions"]["UseIamAuth"] == {"Fn::Equals": [{"Ref": "AuthType"}, "AWS_IAM"]}
    assert set(template["Parameters"]["AuthType"]["AllowedValues"]) == {"NONE", "AWS_IAM"}
    throttling = api["DefaultRouteSettings"]
    assert {"ThrottlingBurstLimit", "ThrottlingRateLimit"} <= set(throttling)


def test_s3_trigger_is_the_training_output_prefix_and_disjoint_from_the_mme_prefix(template: dict[str, Any]) -> None:
    """Given the S3 event filter, when filled with the default prefix, then it is exactly KeyLayout's
    training-output prefix + artifact suffix, and no key model-sync writes can ever match it."""
    event = props(template, "ModelSyncFunction")["Events"]["TrainingOutput"]
    assert event["Type"] == "S3"
    assert event["Properties"]["Bucket"] == {"Ref": "ArtifactBucket"}
    rules = {r["Name"]: r["Value"] for r in event["Properties"]["Filter"]["S3Key"]["Rules"]}
    layout = naming.KeyLayout(parameter_default(template, "ArtifactPrefix"))
    assert layout.prefix == naming.DEFAULT_PREFIX
    prefix = substitute(template, rules["prefix"]["Fn::Sub"])
    assert prefix == layout.training_output_prefix
    assert rules["suffix"] == naming.ARTIFACT_FILENAME
    written = layout.mme_key("Chicago_IL", "20261125T040000Z-1a2b3c4d")
    assert not written.startswith(prefix)
    assert not layout.mme_prefix.startswith(prefix)
    assert not prefix.startswith(layout.mme_prefix)
    assert layout.training_output_key("Chicago_IL", "Chicago-IL-20261125-040000-000").startswith(prefix)


def test_model_data_url_is_the_naming_mme_prefix(template: dict[str, Any]) -> None:
    """Given the SageMaker model, then it is a MultiModel container over KeyLayout's MME prefix."""
    container = props(template, "MultiModel")["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    url = substitute(template, container["ModelDataUrl"]["Fn::Sub"])
    bucket = substitute(template, BUCKET_NAME_SUB)
    assert url == naming.KeyLayout(parameter_default(template, "ArtifactPrefix")).model_data_url(bucket)
    env = container["Environment"]
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"
    # The sourcedir is the managed image's (the default); test_template_serving_image.py resolves both images.
    assert env["SAGEMAKER_SUBMIT_DIRECTORY"] == {
        "Fn::If": ["UseServingImage", {"Ref": "AWS::NoValue"}, {"Ref": "SourceDirS3Uri"}]
    }
    assert env["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == "application/json"
    assert container["MultiModelConfig"] == {"ModelCacheSetting": {"Ref": "ModelCacheSetting"}}
    outputs = template["Outputs"]
    assert outputs["ModelDataUrl"]["Value"] == container["ModelDataUrl"]


def test_functions_never_ref_the_bucket_they_are_triggered_by(template: dict[str, Any]) -> None:
    """Given the functions, then only the S3 event source names the bucket resource; everything else
    uses the !Sub-built name (a Ref/GetAtt there is a circular dependency)."""
    for name in FUNCTIONS:
        properties = {k: v for k, v in props(template, name).items() if k != "Events"}
        for path, node in walk(properties):
            if isinstance(node, dict):
                assert node.get("Ref") != "ArtifactBucket", f"{name}{path}"
                get_att = node.get("Fn::GetAtt")
                assert not (
                    get_att and str(get_att[0] if isinstance(get_att, list) else get_att).startswith("ArtifactBucket")
                ), f"{name}{path}"
                assert "${ArtifactBucket" not in str(node.get("Fn::Sub", "")), f"{name}{path}"
    sync_env = props(template, "ModelSyncFunction")["Environment"]["Variables"]
    assert sync_env["ARTIFACT_BUCKET"] == {"Fn::Sub": BUCKET_NAME_SUB}


def test_every_bucket_reference_uses_the_same_name(template: dict[str, Any]) -> None:
    """Given every !Sub naming the bucket, then all spell it the way the bucket itself is named."""
    assert props(template, "ArtifactBucket")["BucketName"] == {"Fn::Sub": BUCKET_NAME_SUB}
    mentions = [
        s for s in sub_strings(template["Resources"]) + sub_strings(template["Outputs"]) if "BucketNamePrefix" in s
    ]
    assert len(mentions) >= 10
    for text in mentions:
        assert (
            re.sub(r"\$\{BucketNamePrefix\}-\$\{AWS::AccountId\}-\$\{AWS::Region\}", "", text).count("BucketNamePrefix")
            == 0
        ), text
    longest_region = "ap-southeast-4"
    pattern = template["Parameters"]["BucketNamePrefix"]["AllowedPattern"]
    longest_prefix = "a" * 32
    assert re.fullmatch(pattern, longest_prefix)
    assert not re.fullmatch(pattern, "a" * 33)
    assert not re.fullmatch(pattern, "Upper-Case")
    assert len(f"{longest_prefix}-123456789012-{longest_region}") <= 63


def test_bucket_is_private_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    bucket = props(template, "ArtifactBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in {"AES256", "aws:kms"}
    statement = props(template, "ArtifactBucketPolicy")["PolicyDocument"]["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# The keys ModelRegistry reads and writes; the local stack and the tests create the table from the template.
TABLE_KEY_SCHEMA = [
    {"AttributeName": "city", "KeyType": "HASH"},
    {"AttributeName": "record", "KeyType": "RANGE"},
]
TABLE_ATTRIBUTES = [
    {"AttributeName": "city", "AttributeType": "S"},
    {"AttributeName": "record", "AttributeType": "S"},
    {"AttributeName": LIVE_PARTITION_ATTRIBUTE, "AttributeType": "S"},
    {"AttributeName": ROLLOUT_PARTITION_ATTRIBUTE, "AttributeType": "S"},
]
TABLE_GLOBAL_INDEXES = [
    {
        "IndexName": LIVE_INDEX,
        "KeySchema": [
            {"AttributeName": LIVE_PARTITION_ATTRIBUTE, "KeyType": "HASH"},
            {"AttributeName": "city", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
    {
        "IndexName": ROLLOUT_INDEX,
        "KeySchema": [
            {"AttributeName": ROLLOUT_PARTITION_ATTRIBUTE, "KeyType": "HASH"},
            {"AttributeName": "city", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
]


def test_registry_table_matches_the_registry_key_schema(template: dict[str, Any]) -> None:
    table = props(template, "RegistryTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == TABLE_KEY_SCHEMA
    assert table["AttributeDefinitions"] == TABLE_ATTRIBUTES
    assert table["GlobalSecondaryIndexes"] == TABLE_GLOBAL_INDEXES
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True


def statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The statements of the function's own role (SAM ignores Policies on a function that names a Role)."""
    role = props(template, function)["Role"]["Fn::GetAtt"][0]
    policies = [p["PolicyDocument"] for p in props(template, role)["Policies"]]
    return [s for p in policies for s in p["Statement"]]


def test_router_may_only_invoke_its_endpoint_and_read_the_registry(template: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in statements(template, "RouterFunction")}
    assert by_sid["InvokeThisEndpointOnly"]["Action"] == "sagemaker:InvokeEndpoint"
    assert by_sid["InvokeThisEndpointOnly"]["Resource"] == {"Ref": "Endpoint"}
    assert set(by_sid["ReadRegistry"]["Action"]) == {"dynamodb:GetItem", "dynamodb:Query"}
    assert by_sid["ReadRegistry"]["Resource"] == [
        {"Fn::GetAtt": ["RegistryTable", "Arn"]},
        {"Fn::Sub": f"${{RegistryTable.Arn}}/index/{LIVE_INDEX}"},
    ]
    # POST /feedback sends to the feedback queue only; GET /locations/{city} reads the quality table only.
    assert by_sid["SendLabels"]["Action"] == "sqs:SendMessage"
    assert by_sid["SendLabels"]["Resource"] == {"Fn::GetAtt": ["FeedbackQueue", "Arn"]}
    assert by_sid["ReadLiveQuality"]["Action"] == "dynamodb:Query"
    assert by_sid["ReadLiveQuality"]["Resource"] == {"Fn::GetAtt": ["QualityTable", "Arn"]}
    assert set(by_sid) == {
        "InvokeThisEndpointOnly",
        "ReadRegistry",
        "SendLabels",
        "ReadLiveQuality",
        "WriteOwnLogGroup",
        "Tracing",
    }


def test_model_sync_reads_training_outputs_and_writes_only_the_mme_prefix(template: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in statements(template, "ModelSyncFunction")}
    layout = naming.KeyLayout(parameter_default(template, "ArtifactPrefix"))
    bucket = substitute(template, BUCKET_NAME_SUB)
    read = substitute(template, by_sid["ReadTrainingOutputs"]["Resource"]["Fn::Sub"])
    write = substitute(template, by_sid["WriteMultiModelArtifacts"]["Resource"]["Fn::Sub"])
    assert read == f"arn:aws:s3:::{bucket}/{layout.training_output_prefix}*"
    assert write == f"arn:aws:s3:::{bucket}/{layout.mme_prefix}*"
    assert "s3:PutObject" not in by_sid["ReadTrainingOutputs"]["Action"]
    assert "s3:PutObject" in by_sid["WriteMultiModelArtifacts"]["Action"]
    writes = [s for s in by_sid.values() if any(a.startswith("s3:Put") for a in s["Action"])]
    assert writes == [by_sid["WriteMultiModelArtifacts"]]
    assert by_sid["WriteRegistry"]["Resource"] == {"Fn::GetAtt": ["RegistryTable", "Arn"]}
    assert not any(a.endswith("*") or a == "dynamodb:DeleteTable" for a in by_sid["WriteRegistry"]["Action"])


def test_failed_model_sync_events_go_to_an_encrypted_queue(template: dict[str, Any]) -> None:
    config = props(template, "ModelSyncFunction")["EventInvokeConfig"]
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["ModelSyncDeadLetterQueue", "Arn"]},
    }
    assert 0 <= config["MaximumRetryAttempts"] <= 2
    assert props(template, "ModelSyncDeadLetterQueue")["SqsManagedSseEnabled"] is True


def test_both_functions_log_to_log_groups_with_retention(template: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        group_ref = props(template, name)["LoggingConfig"]["LogGroup"]
        group = template["Resources"][group_ref["Ref"]]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_router_botocore_budget_fits_inside_the_lambda_timeout(template: dict[str, Any]) -> None:
    """Given the router's timeouts, then the registry lookup and the endpoint call, every attempt
    (connect + read) plus their retry backoffs (standard mode: at most 1 s each), end at least a second
    before Lambda's timeout, so the router answers 503/504 itself instead of API Gateway timing out."""
    router = props(template, "RouterFunction")
    env = router["Environment"]["Variables"]

    def worst_case(prefix: str) -> int:
        attempts = int(env[f"{prefix}_MAX_ATTEMPTS"])
        per_attempt = int(env[f"{prefix}_CONNECT_TIMEOUT_SECONDS"]) + int(env[f"{prefix}_READ_TIMEOUT_SECONDS"])
        return attempts * per_attempt + (attempts - 1)

    assert worst_case("REGISTRY") + worst_case("ENDPOINT") + 1 <= int(router["Timeout"])


def test_endpoint_autoscaling_targets_the_variant(template: dict[str, Any]) -> None:
    target = props(template, "EndpointScalableTarget")
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert target["ResourceId"] == {"Fn::Sub": "endpoint/${Endpoint.EndpointName}/variant/AllTraffic"}
    assert target["MinCapacity"] == {"Ref": "MinInstanceCount"}
    assert target["MaxCapacity"] == {"Ref": "MaxInstanceCount"}
    variant = props(template, "EndpointConfig")["ProductionVariants"][0]
    assert variant["VariantName"] == "AllTraffic"
    policy = props(template, "EndpointScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("always", True),
        ("not-worse-than-live-by:5", True),
        ("not-worse-than-live-by:2.5", True),
        ("not-worse-than-live-by:0", True),
        ("not-worse-than-live-by:", False),
        ("not-worse-than-live-by:-1", False),
        ("not-worse-than-live-by:5%", False),
        ("never", False),
        ("Always", False),
    ],
)
def test_quality_gate_pattern_admits_only_what_model_sync_parses(
    template: dict[str, Any], value: str, allowed: bool
) -> None:
    assert bool(re.fullmatch(template["Parameters"]["QualityGate"]["AllowedPattern"], value)) is allowed
    if allowed:
        GatePolicy.parse(value)
    assert re.fullmatch(
        template["Parameters"]["QualityGate"]["AllowedPattern"], parameter_default(template, "QualityGate")
    )


@pytest.mark.parametrize("prefix", ["DEMO_MME_SCIKIT_V1", "team/a.b-c", "a", "x/../y", "bad prefix", "/lead", "trail/"])
def test_artifact_prefix_pattern_agrees_with_naming(template: dict[str, Any], prefix: str) -> None:
    allowed = bool(re.fullmatch(template["Parameters"]["ArtifactPrefix"]["AllowedPattern"], prefix))
    try:
        naming.validate_prefix(prefix)
        valid = True
    except ValueError:
        valid = False
    # The CFN pattern cannot express "no '..' segment"; everything it admits beyond naming is that case.
    assert allowed == valid or (allowed and ".." in prefix.split("/"))


def test_source_dir_uri_pattern(template: dict[str, Any]) -> None:
    pattern = template["Parameters"]["SourceDirS3Uri"]["AllowedPattern"]
    assert re.fullmatch(
        pattern, "s3://aws-sam-cli-managed-default-bucket/house-prices-mme/sourcedir/ab12/sourcedir.tar.gz"
    )
    assert not re.fullmatch(pattern, "https://bucket/sourcedir.tar.gz")
    assert not re.fullmatch(pattern, "s3://bucket/")


def test_outputs(template: dict[str, Any]) -> None:
    assert {
        "ApiUrl",
        "ArtifactBucketName",
        "ModelDataUrl",
        "EndpointName",
        "RegistryTableName",
        "RouterFunctionName",
        "ModelSyncFunctionName",
        "ModelSyncDeadLetterQueueUrl",
    } <= set(template["Outputs"])
    assert props(template, "Endpoint")["EndpointName"] == {"Ref": "EndpointName"}


def test_functions_with_their_own_role_carry_no_policies(template: dict[str, Any]) -> None:
    """SAM silently ignores Policies on a function that names its Role: grants belong on the role."""
    for name in FUNCTIONS:
        function = props(template, name)
        assert "Role" in function, name
        assert "Policies" not in function, f"{name}: move these statements to its role"


def training_role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The training role's statements with every ${...} filled in (resources and conditions alike)."""

    def filled(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return substitute(template, node["Fn::Sub"])
        if isinstance(node, dict):
            return {key: filled(value) for key, value in node.items()}
        if isinstance(node, list):
            return [filled(value) for value in node]
        return node

    policies = props(template, "SageMakerTrainingRole")["Policies"]
    return [filled(s) for policy in policies for s in policy["PolicyDocument"]["Statement"]]


def test_shard_jobs_read_their_shard_and_write_each_segments_artifact_and_their_report(
    template: dict[str, Any],
) -> None:
    from tests.iam import Permission, is_allowed

    # Given the training role and the key layout shard jobs use
    grants = training_role_statements(template)
    layout = naming.KeyLayout(parameter_default(template, "ArtifactPrefix"))
    bucket = f"arn:aws:s3:::{substitute(template, BUCKET_NAME_SUB)}"
    job = "segments-20261207-020000-000-00003"

    def allowed(action: str, key: str | None = None, **context: str) -> bool:
        return is_allowed(grants, Permission(action, f"{bucket}/{key}" if key else bucket, context))

    # Then a job may read its shard (and list it), upload each segment's artifact and its own report
    assert allowed("s3:GetObject", f"{layout.shard_input_prefix(job)}shard.npz")
    assert allowed("s3:ListBucket", None, **{"s3:prefix": layout.shard_input_prefix(job)})
    assert allowed("s3:PutObject", layout.training_output_key("Chicago_IL", job))
    assert allowed("s3:PutObject", f"{layout.training_jobs_prefix}{job}/output/model.tar.gz")
    # And never write what serves, nor read what the gate measures on
    assert not allowed("s3:PutObject", layout.mme_key("Chicago_IL", "20261207T020000Z-0123abcd"))
    assert not allowed("s3:PutObject", layout.prep_key("Chicago_IL", "val"))
    assert not allowed("s3:PutObject", layout.training_manifest_key)

"""local.template: reading template.yaml and resolving intrinsics against local resources."""

from __future__ import annotations

from pathlib import Path

import pytest

from house_prices.naming import KeyLayout
from local.template import DEFAULT_TEMPLATE, LocalResources, Template, TemplateError, load_yaml

FIXTURE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Prefix: {Type: String, Default: PFX}
  Stage: {Type: String, Default: dev}
  NoDefault: {Type: String}
Mappings:
  Accounts:
    us-east-1: {Account: "111122223333"}
    eu-west-1: {Account: "444455556666"}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Globals:
  Function:
    Runtime: python3.13
    Timeout: 7
    Layers: [!Ref Layer]
    Environment:
      Variables:
        SHARED: global
        OVERRIDDEN: global
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: layers/common/}
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${Prefix}-bucket-${AWS::AccountId}-${AWS::Region}"
  Table:
    Type: AWS::DynamoDB::Table
  Queue:
    Type: AWS::SQS::Queue
  Api:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api/
      Handler: api.handler.main
      MemorySize: 256
      Environment:
        Variables:
          OVERRIDDEN: own
          TABLE: !Ref Table
          TABLE_ARN: !GetAtt Table.Arn
          JOINED: !Join ["/", [a, !Ref Stage, c]]
          PICKED: !Select [1, !Split [",", "x,y,z"]]
          MAPPED: !FindInMap [Accounts, !Ref AWS::Region, Account]
          CHOSEN: !If [IsProd, production, not-production]
          LITERAL: !Sub "${!NotAVariable}-${Stage}"
          LISTED: !Sub ["${A}-${B}", {A: one, B: !Ref Stage}]
          COUNT: 10
          FLAG: true
      Events:
        Get:
          Type: HttpApi
          Properties: {Path: "/things/{id}", Method: get}
        Any:
          Type: HttpApi
          Properties: {Path: /things, Method: ANY}
        Catch:
          Type: HttpApi
  Sync:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sync/
      Handler: sync.handler.lambda_handler
      Timeout: 60
      Environment:
        Variables:
          BUCKET: !Sub "${Prefix}-bucket-${AWS::AccountId}-${AWS::Region}"
      EventInvokeConfig:
        MaximumRetryAttempts: 1
        DestinationConfig:
          OnFailure: {Type: SQS, Destination: !GetAtt Queue.Arn}
      Events:
        Upload:
          Type: S3
          Properties:
            Bucket: !Ref Bucket
            Events: [s3:ObjectCreated:Put, s3:ObjectCreated:Copy]
            Filter:
              S3Key:
                Rules:
                  - {Name: prefix, Value: !Sub "${Prefix}/in/"}
                  - {Name: Suffix, Value: .tar.gz}
  Model:
    Type: AWS::SageMaker::Model
    Properties:
      PrimaryContainer:
        Mode: MultiModel
        ModelDataUrl: !Sub "s3://${Prefix}-bucket-${AWS::AccountId}-${AWS::Region}/${Prefix}/mme/"
        Image: !Sub
          - "${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/img:1"
          - Account: !FindInMap [Accounts, !Ref AWS::Region, Account]
        Environment:
          SAGEMAKER_PROGRAM: serve.py
        MultiModelConfig: {ModelCacheSetting: Disabled}
"""


@pytest.fixture
def template(tmp_path: Path) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(FIXTURE)
    return Template.load(path)


def test_short_tags_become_long_form_intrinsics() -> None:
    # Given YAML with CloudFormation short tags
    document = load_yaml("A: !Sub '${X}'\nB: !GetAtt Res.Arn\nC: !Ref P\nD: !If [c, 1, 2]\nE: yes\n")
    # Then they parse as the long JSON forms, and YAML 1.1 booleans like `yes` stay strings
    assert document == {
        "A": {"Fn::Sub": "${X}"},
        "B": {"Fn::GetAtt": ["Res", "Arn"]},
        "C": {"Ref": "P"},
        "D": {"Fn::If": ["c", 1, 2]},
        "E": "yes",
    }


def test_function_merges_globals_and_resolves_every_intrinsic(template: Template) -> None:
    # Given the default local resources (stack name, region, moto's account)
    api = template.function("Api")
    # Then SAM globals apply where the function is silent and the function wins where it speaks
    assert (api.timeout, api.memory_size, api.runtime) == (7, 256, "python3.13")
    assert api.module == "api.handler"
    assert api.attribute == "main"
    assert api.code_uri == (template.base_dir / "functions/api").resolve()
    assert api.layer_paths == ((template.base_dir / "layers/common").resolve(),)
    assert api.function_name == "house-prices-local-Api"
    assert dict(api.environment) == {
        "SHARED": "global",
        "OVERRIDDEN": "own",
        "TABLE": "house-prices-local-Table",
        "TABLE_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/house-prices-local-Table",
        "JOINED": "a/dev/c",
        "PICKED": "y",
        "MAPPED": "111122223333",
        "CHOSEN": "not-production",
        "LITERAL": "${NotAVariable}-dev",
        "LISTED": "one-dev",
        "COUNT": "10",
        "FLAG": "true",
    }


def test_parameters_and_refs_come_from_local_resources(template: Template) -> None:
    # Given overrides for a parameter and for the table's physical name
    resources = LocalResources(
        stack_name="s", region="eu-west-1", parameters={"Stage": "prod"}, refs={"Table": "my-table"}
    )
    api = template.function("Api", resources)
    # Then conditions, refs and ARNs follow them
    assert api.environment["CHOSEN"] == "production"
    assert api.environment["TABLE"] == "my-table"
    assert api.environment["TABLE_ARN"] == "arn:aws:dynamodb:eu-west-1:123456789012:table/my-table"


def test_http_api_events_become_routes(template: Template) -> None:
    routes = {route.event_name: route for route in template.function("Api").http_routes}
    assert routes["Get"].route_key == "GET /things/{id}"
    assert routes["Any"].route_key == "ANY /things"
    # An HttpApi event without Path and Method is the $default route
    assert routes["Catch"].route_key == "$default"


def test_s3_event_filter_and_retries_are_read(template: Template) -> None:
    sync = template.function("Sync")
    (trigger,) = sync.s3_triggers
    assert trigger.bucket_logical_id == "Bucket"
    assert trigger.bucket_name == "PFX-bucket-123456789012-us-east-1"
    # The bucket's !Sub name and the function's copy of it resolve to the same local bucket
    assert sync.environment["BUCKET"] == trigger.bucket_name
    assert trigger.events == ("s3:ObjectCreated:Put", "s3:ObjectCreated:Copy")
    assert (trigger.prefix, trigger.suffix) == ("PFX/in/", ".tar.gz")
    assert trigger.matches("PFX/in/a/model.tar.gz")
    assert not trigger.matches("PFX/out/a/model.tar.gz")
    assert sync.max_async_retries == 1
    assert sync.on_failure_logical_id == "Queue"


def test_multi_model_settings(template: Template) -> None:
    model = template.multi_model()
    assert model.model_cache_setting == "Disabled"
    assert model.program == "serve.py"
    assert model.model_data_url == "s3://PFX-bucket-123456789012-us-east-1/PFX/mme/"
    assert model.image == "111122223333.dkr.ecr.us-east-1.amazonaws.com/img:1"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ({"Ref": "NoDefault"}, "X.Y: parameter 'NoDefault' has no Default"),
        ({"Ref": "Missing"}, "X.Y: !Ref Missing names no parameter or resource"),
        ({"Fn::GetAtt": ["Queue", "QueueUrl"]}, "X.Y: cannot resolve !GetAtt Queue.QueueUrl"),
        ({"Fn::ImportValue": "shared"}, "X.Y: intrinsic function Fn::ImportValue is not supported"),
        ({"Fn::FindInMap": ["Accounts", "mars-1", "Account"]}, "X.Y: !FindInMap [Accounts, mars-1, Account]"),
    ],
)
def test_unresolvable_references_name_the_field(template: Template, snippet: dict, expected: str) -> None:
    with pytest.raises(TemplateError, match=expected.replace("[", r"\[").replace("]", r"\]").replace("!", "!")):
        template.resolve(snippet, LocalResources(), where="X.Y")


def test_unknown_function_is_a_clear_error(template: Template) -> None:
    with pytest.raises(TemplateError, match="no function 'Nope' in template \\(functions: Api, Sync\\)"):
        template.function("Nope")


# --- the project's real template.yaml ------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> Template:
    if not DEFAULT_TEMPLATE.is_file():
        pytest.skip("template.yaml not written yet")
    return Template.load()


def test_real_template_router_routes_and_environment(real: Template) -> None:
    router = real.function("RouterFunction")
    assert router.handler == "router.handler.lambda_handler"
    assert {route.route_key for route in router.http_routes} == {
        "POST /locations/{city}/predictions",
        "GET /locations",
        "GET /locations/{city}",
        "GET /health",
        "GET /openapi.json",
        "POST /feedback",
    }
    # The endpoint name comes from the EndpointName parameter via !GetAtt Endpoint.EndpointName
    assert router.environment["ENDPOINT_NAME"] == real.parameter_defaults["EndpointName"]
    assert router.environment["REGISTRY_TABLE"] == "house-prices-local-RegistryTable"


def test_real_template_model_sync_trigger_matches_key_layout(real: Template) -> None:
    sync = real.function("ModelSyncFunction")
    (trigger,) = sync.s3_triggers
    layout = KeyLayout(sync.environment["MODEL_PREFIX"])
    # The S3 filter selects exactly the training outputs and never what model-sync writes
    assert trigger.matches(layout.training_output_key("Chicago_IL", "job-1"))
    assert not trigger.matches(layout.mme_key("Chicago_IL", "20260101T000000Z-0123abcd"))
    assert sync.environment["ARTIFACT_BUCKET"] == trigger.bucket_name
    assert sync.environment["REGISTRY_TABLE"] == real.function("RouterFunction").environment["REGISTRY_TABLE"]


def test_real_template_multi_model_points_at_the_mme_prefix(real: Template) -> None:
    resources = LocalResources(parameters={"SourceDirS3Uri": "s3://bucket/code/sourcedir.tar.gz"})
    model = real.multi_model(resources)
    sync = real.function("ModelSyncFunction", resources)
    layout = KeyLayout(sync.environment["MODEL_PREFIX"])
    assert model.model_data_url == layout.model_data_url(sync.environment["ARTIFACT_BUCKET"])
    assert model.program == "inference.py"
    assert model.model_cache_setting in {"Enabled", "Disabled"}


def test_real_template_cors_is_what_api_gateway_will_apply(real: Template) -> None:
    (api_id,) = {route.api_id for route in real.function("RouterFunction").http_routes}
    cors = real.http_api_cors(api_id)
    assert cors is not None
    assert cors.allow_origins == ("*",)
    assert set(cors.allow_methods) >= {"GET", "POST", "OPTIONS"}
    assert "content-type" in cors.allow_headers
    assert cors.max_age == 300


CORS_AND_CONCURRENCY = """
Globals:
  HttpApi:
    CorsConfiguration: true
Resources:
  Explicit:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration:
        AllowOrigins: [https://app.example]
        AllowCredentials: true
  Implicit:
    Type: AWS::Serverless::HttpApi
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: fn.handler
      ReservedConcurrentExecutions: 3
      Events:
        Get: {Type: HttpApi, Properties: {ApiId: !Ref Explicit, Path: /x, Method: GET}}
"""


def test_cors_configuration_and_reserved_concurrency_are_read() -> None:
    template = Template(load_yaml(CORS_AND_CONCURRENCY))
    function = template.function("Fn")
    assert function.reserved_concurrency == 3
    assert function.http_routes[0].api_id == "Explicit"
    explicit = template.http_api_cors("Explicit")
    assert explicit is not None
    assert (explicit.allow_origins, explicit.allow_credentials) == (("https://app.example",), True)
    # `CorsConfiguration: true` in Globals is SAM's "any origin"
    implicit = template.http_api_cors("Implicit")
    assert implicit is not None
    assert implicit.allow_origins == ("*",)


def test_real_template_registry_table_becomes_create_table_arguments(real: Template) -> None:
    # Given the template's registry table / When read as CreateTable arguments
    definition = real.table_definition("RegistryTable")
    # Then the keys and index the registry uses are there, and CloudFormation-only properties are not
    assert definition["KeySchema"] == [
        {"AttributeName": "city", "KeyType": "HASH"},
        {"AttributeName": "record", "KeyType": "RANGE"},
    ]
    assert [index["IndexName"] for index in definition["GlobalSecondaryIndexes"]] == ["live-models", "rollouts"]
    assert definition["BillingMode"] == "PAY_PER_REQUEST"
    assert set(definition) == {"AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode"}
    with pytest.raises(TemplateError, match="no AWS::DynamoDB::Table 'Nope'"):
        real.table_definition("Nope")


def test_a_kept_registry_table_gains_the_indexes_the_template_added_since(real: Template) -> None:
    # Given a registry table kept in .local/state from before the `rollouts` index was declared
    import boto3
    from moto import mock_aws

    from local.moto_services import add_missing_indexes

    definition = real.table_definition("RegistryTable")
    older = [index for index in definition["GlobalSecondaryIndexes"] if index["IndexName"] != "rollouts"]
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        attributes = [a for a in definition["AttributeDefinitions"] if a["AttributeName"] != "rollout_partition"]
        dynamodb.create_table(
            TableName="demo-RegistryTable",
            **{**definition, "GlobalSecondaryIndexes": older, "AttributeDefinitions": attributes},
        )
        # When the stack provisions it again
        added = add_missing_indexes(dynamodb, "demo-RegistryTable", real)
        # Then the missing index exists (and a second run adds nothing)
        described = dynamodb.describe_table(TableName="demo-RegistryTable")["Table"]
        assert added == ["rollouts"]
        assert {index["IndexName"] for index in described["GlobalSecondaryIndexes"]} == {
            index["IndexName"] for index in definition["GlobalSecondaryIndexes"]
        }
        assert add_missing_indexes(dynamodb, "demo-RegistryTable", real) == []

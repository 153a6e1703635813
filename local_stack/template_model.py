"""A typed, evaluated view of the SAM template, for the local cloud.

The local cloud does not run CloudFormation: it reads template.yaml itself and creates the resources it needs in
moto. This module does the reading: YAML with CloudFormation short tags, SAM ``Globals``, parameters (defaults plus
overrides, checked against the declared constraints), conditions, pseudo parameters, and the intrinsic functions,
evaluated against a table of the physical names and ARNs the local cloud gives the resources.

Anything the local cloud cannot honour faithfully (an intrinsic it does not implement, a ``Ref`` to a resource it
does not create, inline code, code in S3) raises :class:`TemplateError` naming the thing and where it is: the
template is the contract, so a silent guess would hide a defect.
"""

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"

# SAM defaults for AWS::Serverless::Function (https://docs.aws.amazon.com/serverless-application-model/).
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 3
# Lambda keeps an asynchronous event this long by default (EventInvokeConfig MaximumEventAgeInSeconds: 60 to 21600).
DEFAULT_MAXIMUM_EVENT_AGE_SECONDS = 6 * 3600
DEFAULT_FUNCTION_MEMORY_MB = 128
# SAM's implicit API (function Api events without RestApiId) and its stage.
IMPLICIT_API_LOGICAL_ID = "ServerlessRestApi"
IMPLICIT_API_STAGE = "Prod"

# Globals section name -> the SAM resource type it applies to.
GLOBALS_SECTIONS = {
    "Function": "AWS::Serverless::Function",
    "Api": "AWS::Serverless::Api",
    "HttpApi": "AWS::Serverless::HttpApi",
    "SimpleTable": "AWS::Serverless::SimpleTable",
    "StateMachine": "AWS::Serverless::StateMachine",
}

FUNCTION_TYPES = ("AWS::Serverless::Function",)
LAYER_TYPES = ("AWS::Serverless::LayerVersion",)
REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository's template, which the local stack runs.
REPOSITORY_TEMPLATE = REPO_ROOT / "template.yaml"
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine",)
BUCKET_TYPES = ("AWS::S3::Bucket",)
TABLE_TYPES = ("AWS::DynamoDB::Table",)
# The tables the local stack and the tests reach by their role (docs/architecture.md names them).
JOBS_TABLE = "JobsTable"
CALLER_MAPPINGS_TABLE = "CallerMappingsTable"
API_TYPES = ("AWS::Serverless::Api",)


class TemplateError(Exception):
    """The template cannot be read or evaluated faithfully by the local cloud."""


# --------------------------------------------------------------------------------------------------------------------
# YAML with CloudFormation short tags


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader plus the CloudFormation short tags; dates stay strings, as CloudFormation reads them."""


_TemplateLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    """``!Ref x`` -> ``{"Ref": x}``; ``!GetAtt a.b`` -> ``{"Fn::GetAtt": [a, b]}``; ``!Name v`` -> ``{"Fn::Name": v}``.

    Every tag is accepted here; evaluation rejects the functions it does not implement, naming them.
    """
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _construct_short_tag)


def load_template_document(path: Path) -> dict[str, Any]:
    """Parse a template file (YAML with short tags, or JSON) into plain Python data."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)  # noqa: S506 (safe subclass)
    except yaml.YAMLError as error:
        raise TemplateError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path}: a template needs a Resources mapping")
    return document


# --------------------------------------------------------------------------------------------------------------------
# Parameters


def _scalar_to_string(value: Any, where: str) -> str:
    """CloudFormation passes scalars around as strings; YAML may have given us numbers or booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {type(value).__name__} {value!r}")


def resolve_parameters(declared: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str | list[str]]:
    """Parameter values from overrides, else defaults, checked against the declared constraints."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameter overrides for undeclared parameters: {', '.join(unknown)}")
    values: dict[str, str | list[str]] = {}
    for name, spec in declared.items():
        where = f"Parameters.{name}"
        if name in overrides:
            raw = _scalar_to_string(overrides[name], where)
        elif "Default" in spec:
            raw = _scalar_to_string(spec["Default"], where)
        else:
            raise TemplateError(f"{where}: no value given and no Default")
        values[name] = _check_parameter(name, spec, raw)
    return values


def _check_parameter(name: str, spec: Mapping[str, Any], raw: str) -> str | list[str]:
    where = f"Parameters.{name}"
    kind = spec.get("Type", "String")
    allowed = [_scalar_to_string(value, where) for value in spec.get("AllowedValues", [])]
    if allowed and raw not in allowed:
        raise TemplateError(f"{where}: {raw!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, raw) is None:
        raise TemplateError(f"{where}: {raw!r} does not match AllowedPattern {pattern!r}")
    if "MinLength" in spec and len(raw) < int(spec["MinLength"]):
        raise TemplateError(f"{where}: {raw!r} is shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(raw) > int(spec["MaxLength"]):
        raise TemplateError(f"{where}: {raw!r} is longer than MaxLength {spec['MaxLength']}")
    if kind == "Number":
        try:
            number = float(raw)
        except ValueError:
            raise TemplateError(f"{where}: {raw!r} is not a Number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"{where}: {raw} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"{where}: {raw} is above MaxValue {spec['MaxValue']}")
        return raw
    if kind == "CommaDelimitedList" or kind.startswith("List<"):
        return [item.strip() for item in raw.split(",")] if raw else []
    if kind == "String" or kind.startswith("AWS::"):
        return raw
    raise TemplateError(f"{where}: parameter type {kind!r} is not supported locally")


# --------------------------------------------------------------------------------------------------------------------
# Physical resources


@dataclass(frozen=True)
class PhysicalResource:
    """What ``Ref`` and ``Fn::GetAtt`` give for one resource."""

    type: str
    ref: str
    attributes: Mapping[str, str]


def _stable_suffix(*parts: str, length: int = 13) -> str:
    """A deterministic stand-in for the random suffix CloudFormation appends to generated names."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest().upper()
    return digest[:length]


def generated_name(stack_name: str, logical_id: str, max_length: int) -> str:
    """``<stack>-<LogicalId>-<SUFFIX>`` cut to fit, the way CloudFormation names resources without a name."""
    suffix = _stable_suffix(stack_name, logical_id)
    room = max_length - len(suffix) - 2
    stack_part = stack_name[: max(room // 2, room - len(logical_id))]
    logical_part = logical_id[: room - len(stack_part)]
    return f"{stack_part}-{logical_part}-{suffix}"


@dataclass(frozen=True)
class _Naming:
    """How one resource type is named and what its Ref and attributes are."""

    name_property: str
    max_length: int
    build: Callable[[str, str, str], tuple[str, dict[str, str]]]  # (name, region, account) -> (ref, attributes)
    lowercase: bool = False


def _lambda_function(name: str, region: str, account: str) -> tuple[str, dict[str, str]]:
    return name, {"Arn": f"arn:{PARTITION}:lambda:{region}:{account}:function:{name}"}


def _layer_version(name: str, region: str, account: str) -> tuple[str, dict[str, str]]:
    return f"arn:{PARTITION}:lambda:{region}:{account}:layer:{name}:1", {}


def _state_machine(name: str, region: str, account: str) -> tuple[str, dict[str, str]]:
    arn = f"arn:{PARTITION}:states:{region}:{account}:stateMachine:{name}"
    return arn, {"Arn": arn, "Name": name}


def _bucket(name: str, region: str, account: str) -> tuple[str, dict[str, str]]:
    return name, {
        "Arn": f"arn:{PARTITION}:s3:::{name}",
        "DomainName": f"{name}.s3.{URL_SUFFIX}",
        "RegionalDomainName": f"{name}.s3.{region}.{URL_SUFFIX}",
    }


def _table(name: str, region: str, account: str) -> tuple[str, dict[str, str]]:
    return name, {"Arn": f"arn:{PARTITION}:dynamodb:{region}:{account}:table/{name}"}


def _rest_api(name: str, region: str, account: str) -> tuple[str, dict[str, str]]:
    api_id = _stable_suffix(name, length=10).lower()
    return api_id, {"RootResourceId": _stable_suffix(api_id, length=10).lower()}


def _event_bus(name: str, region: str, account: str) -> tuple[str, dict[str, str]]:
    return name, {"Arn": f"arn:{PARTITION}:events:{region}:{account}:event-bus/{name}", "Name": name}


def _role(name: str, region: str, account: str) -> tuple[str, dict[str, str]]:
    return name, {"Arn": f"arn:{PARTITION}:iam::{account}:role/{name}"}


# Only the types the local cloud creates (or, for the API, serves): a Ref to anything else is an error, not a name
# that exists nowhere.
_NAMING: dict[str, _Naming] = {
    "AWS::Serverless::Function": _Naming("FunctionName", 64, _lambda_function),
    "AWS::Serverless::LayerVersion": _Naming("LayerName", 140, _layer_version),
    "AWS::Serverless::StateMachine": _Naming("Name", 80, _state_machine),
    "AWS::S3::Bucket": _Naming("BucketName", 63, _bucket, lowercase=True),
    "AWS::DynamoDB::Table": _Naming("TableName", 255, _table),
    "AWS::Serverless::Api": _Naming("Name", 255, _rest_api),
    "AWS::IAM::Role": _Naming("RoleName", 64, _role),
    "AWS::Events::EventBus": _Naming("Name", 256, _event_bus),
}
# SAM creates an execution role "<LogicalId>Role" for these when they have no Role property.
_IMPLICIT_ROLE_TYPES = ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")


# --------------------------------------------------------------------------------------------------------------------
# Intrinsic functions


class _NoValue:
    """``Ref: AWS::NoValue``: the property or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

_SUB_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def _intrinsic_name(value: Any) -> str | None:
    """The function name if ``value`` is an intrinsic call (a one-key mapping ``Ref`` or ``Fn::*``)."""
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if key == "Ref" or key.startswith("Fn::"):
            return key
    return None


class IntrinsicEvaluator:
    """Evaluates template values: parameters, pseudo parameters, conditions, mappings and the physical table."""

    def __init__(
        self,
        *,
        parameters: Mapping[str, str | list[str]],
        pseudo_parameters: Mapping[str, str | list[str]],
        resources: Mapping[str, PhysicalResource],
        conditions: Mapping[str, Any],
        mappings: Mapping[str, Any],
    ) -> None:
        self._parameters = parameters
        self._pseudo = pseudo_parameters
        self._resources = resources
        self._condition_definitions = conditions
        self._mappings = mappings
        self._condition_values: dict[str, bool] = {}
        self._handlers: dict[str, Callable[[Any, str], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::If": self._if,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": self._base64,
            "Fn::Equals": self._equals,
            "Fn::And": self._and,
            "Fn::Or": self._or,
            "Fn::Not": self._not,
        }

    def evaluate(self, value: Any, where: str) -> Any:
        """The value with every intrinsic replaced by its result (``AWS::NoValue`` items removed)."""
        name = _intrinsic_name(value)
        if name is not None:
            handler = self._handlers.get(name)
            if handler is None:
                raise TemplateError(f"{where}: intrinsic function {name} is not supported by the local cloud")
            return handler(value[name], f"{where}.{name}")
        if isinstance(value, dict):
            evaluated = {key: self.evaluate(item, f"{where}.{key}") for key, item in value.items()}
            return {key: item for key, item in evaluated.items() if item is not NO_VALUE}
        if isinstance(value, list):
            items = [self.evaluate(item, f"{where}[{index}]") for index, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        return value

    def condition(self, name: str, where: str) -> bool:
        """The value of a named condition (evaluated once)."""
        if name not in self._condition_values:
            if name not in self._condition_definitions:
                raise TemplateError(f"{where}: condition {name!r} is not defined in Conditions")
            self._condition_values[name] = self._condition_expression(self._condition_definitions[name], name)
        return self._condition_values[name]

    def _condition_expression(self, value: Any, where: str) -> bool:
        if isinstance(value, dict) and list(value) == ["Condition"]:
            return self.condition(value["Condition"], where)
        result = self.evaluate(value, where)
        if not isinstance(result, bool):
            raise TemplateError(f"{where}: a condition must evaluate to true or false, got {result!r}")
        return result

    def _string(self, value: Any, where: str) -> str:
        return _scalar_to_string(self.evaluate(value, where), where)

    def _ref(self, target: Any, where: str) -> Any:
        if not isinstance(target, str):
            raise TemplateError(f"{where}: Ref needs a name, got {target!r}")
        if target == "AWS::NoValue":
            return NO_VALUE
        if target in self._pseudo:
            return self._pseudo[target]
        if target.startswith("AWS::"):
            raise TemplateError(f"{where}: pseudo parameter {target} is not supported by the local cloud")
        if target in self._parameters:
            return self._parameters[target]
        return self._resource(target, where).ref

    def _resource(self, logical_id: str, where: str) -> PhysicalResource:
        resource = self._resources.get(logical_id)
        if resource is None:
            raise TemplateError(
                f"{where}: {logical_id!r} is not a parameter or a resource the local cloud creates"
                " (unknown name, a resource whose Condition is false, or a resource type it does not support)"
            )
        return resource

    def _get_att(self, args: Any, where: str) -> str:
        if not (isinstance(args, list) and len(args) == 2):
            raise TemplateError(f"{where}: Fn::GetAtt needs [LogicalId, Attribute], got {args!r}")
        logical_id = self._string(args[0], where)
        attribute = self._string(args[1], where)
        resource = self._resource(logical_id, where)
        if attribute not in resource.attributes:
            raise TemplateError(
                f"{where}: attribute {attribute!r} of {logical_id} ({resource.type}) is not known to the local cloud;"
                f" known: {sorted(resource.attributes)}"
            )
        return resource.attributes[attribute]

    def _sub(self, args: Any, where: str) -> str:
        if isinstance(args, str):
            text, variables = args, {}
        elif isinstance(args, list) and len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], dict):
            text = args[0]
            variables = {key: self._string(value, f"{where}.{key}") for key, value in args[1].items()}
        else:
            raise TemplateError(f"{where}: Fn::Sub needs a string or [string, {{variables}}], got {args!r}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + match.group(1)[1:] + "}"
            if name in variables:
                return variables[name]
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self._get_att([logical_id, attribute], where)
            return _scalar_to_string(self._ref(name, where), where)

        return _SUB_PLACEHOLDER.sub(replace, text)

    def _join(self, args: Any, where: str) -> str:
        if not (isinstance(args, list) and len(args) == 2):
            raise TemplateError(f"{where}: Fn::Join needs [delimiter, [values]], got {args!r}")
        delimiter = self._string(args[0], where)
        items = self.evaluate(args[1], where)
        if not isinstance(items, list):
            raise TemplateError(f"{where}: Fn::Join needs a list of values, got {items!r}")
        return delimiter.join(_scalar_to_string(item, where) for item in items)

    def _select(self, args: Any, where: str) -> Any:
        if not (isinstance(args, list) and len(args) == 2):
            raise TemplateError(f"{where}: Fn::Select needs [index, [values]], got {args!r}")
        index = int(self._string(args[0], where))
        items = self.evaluate(args[1], where)
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise TemplateError(f"{where}: Fn::Select index {index} is outside {items!r}")
        return items[index]

    def _split(self, args: Any, where: str) -> list[str]:
        if not (isinstance(args, list) and len(args) == 2):
            raise TemplateError(f"{where}: Fn::Split needs [delimiter, string], got {args!r}")
        return self._string(args[1], where).split(self._string(args[0], where))

    def _if(self, args: Any, where: str) -> Any:
        if not (isinstance(args, list) and len(args) == 3 and isinstance(args[0], str)):
            raise TemplateError(f"{where}: Fn::If needs [ConditionName, value if true, value if false], got {args!r}")
        chosen = args[1] if self.condition(args[0], where) else args[2]
        return self.evaluate(chosen, where)

    def _find_in_map(self, args: Any, where: str) -> Any:
        if not (isinstance(args, list) and len(args) == 3):
            raise TemplateError(f"{where}: Fn::FindInMap needs [MapName, TopLevelKey, SecondLevelKey], got {args!r}")
        map_name, top, second = (self._string(arg, where) for arg in args)
        try:
            return self.evaluate(self._mappings[map_name][top][second], where)
        except (KeyError, TypeError):
            raise TemplateError(f"{where}: Mappings has no {map_name}.{top}.{second}") from None

    def _base64(self, value: Any, where: str) -> str:
        return base64.b64encode(self._string(value, where).encode()).decode()

    def _equals(self, args: Any, where: str) -> bool:
        if not (isinstance(args, list) and len(args) == 2):
            raise TemplateError(f"{where}: Fn::Equals needs two values, got {args!r}")
        left, right = (self.evaluate(arg, where) for arg in args)
        if isinstance(left, list) or isinstance(right, list):
            return left == right
        return _scalar_to_string(left, where) == _scalar_to_string(right, where)

    def _conditions(self, args: Any, where: str) -> Iterator[bool]:
        if not isinstance(args, list) or not args:
            raise TemplateError(f"{where}: expected a list of conditions, got {args!r}")
        return (self._condition_expression(arg, where) for arg in args)

    def _and(self, args: Any, where: str) -> bool:
        return all(self._conditions(args, where))

    def _or(self, args: Any, where: str) -> bool:
        return any(self._conditions(args, where))

    def _not(self, args: Any, where: str) -> bool:
        if not (isinstance(args, list) and len(args) == 1):
            raise TemplateError(f"{where}: Fn::Not needs a list of one condition, got {args!r}")
        return not self._condition_expression(args[0], where)


# --------------------------------------------------------------------------------------------------------------------
# SAM Globals


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's merge: mappings merge key by key, lists concatenate (globals first), anything else: the resource wins."""
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        if _intrinsic_name(global_value) or _intrinsic_name(local_value):
            return local_value
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _apply_globals(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Resources (logical id -> definition) with the Globals section merged into their Properties."""
    globals_section = document.get("Globals") or {}
    unknown = sorted(set(globals_section) - set(GLOBALS_SECTIONS))
    if unknown:
        raise TemplateError(f"Globals: unknown section(s) {', '.join(unknown)}; SAM has {sorted(GLOBALS_SECTIONS)}")
    by_type = {GLOBALS_SECTIONS[section]: values for section, values in globals_section.items()}
    resources: dict[str, dict[str, Any]] = {}
    for logical_id, definition in document["Resources"].items():
        if not isinstance(definition, dict) or "Type" not in definition:
            raise TemplateError(f"Resources.{logical_id}: a resource needs a Type")
        properties = definition.get("Properties") or {}
        if definition["Type"] in by_type:
            properties = merge_globals(by_type[definition["Type"]], properties)
        resources[logical_id] = {**definition, "Properties": properties}
    return resources


# --------------------------------------------------------------------------------------------------------------------
# Typed views


@dataclass(frozen=True)
class ApiRoute:
    """One ``Api`` event of a function: the REST resource path template, the HTTP method (``ANY`` for any) and the
    event's own ``Auth.Authorizer`` (None: the API's DefaultAuthorizer applies)."""

    function_logical_id: str
    event_name: str
    api_logical_id: str
    path: str
    method: str
    authorizer: str | None


@dataclass(frozen=True)
class ScheduleSpec:
    """One ``Schedule`` or ``ScheduleV2`` event of a function: its rate and whether it is enabled. Neither moto's
    EventBridge nor its Scheduler fires schedules; the local cloud runs them (:mod:`local_stack.scheduler`)."""

    function_logical_id: str
    event_name: str
    expression: str
    enabled: bool

    @property
    def period_seconds(self) -> int:
        """The period of a ``rate(N unit)`` expression (the only kind the local cloud runs)."""
        match = _RATE.fullmatch(self.expression.strip())
        if match is None:
            raise TemplateError(
                f"Resources.{self.function_logical_id}.Properties.Events.{self.event_name}: the local cloud runs "
                f"rate(N minute(s)|hour(s)|day(s)) schedules, not {self.expression!r}"
            )
        count, unit = int(match["count"]), match["unit"]
        if (count == 1) != (not unit.endswith("s")):
            raise TemplateError(
                f"Resources.{self.function_logical_id}.Properties.Events.{self.event_name}: {self.expression!r}: "
                f"EventBridge wants rate(1 {unit.rstrip('s')}) or rate(N {unit.rstrip('s')}s)"
            )
        return count * _RATE_UNIT_SECONDS[unit.rstrip("s")]


_RATE = re.compile(r"rate\((?P<count>[1-9][0-9]*) (?P<unit>minutes?|hours?|days?)\)")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class EventRuleSpec:
    """One ``EventBridgeRule`` event of a function: the bus, the event pattern and whether the rule is enabled.
    moto's EventBridge matches the pattern but does not invoke Lambda targets; the local cloud does
    (:mod:`local_stack.event_delivery`)."""

    function_logical_id: str
    event_name: str
    event_bus_name: str
    pattern: Mapping[str, Any]
    enabled: bool

    @property
    def rule_name(self) -> str:
        return f"{self.function_logical_id}{self.event_name}"


@dataclass(frozen=True)
class StreamSourceSpec:
    """One ``DynamoDB`` event of a function: the table whose stream it reads and how its event source mapping reads
    it. moto records a table's stream but runs no mapping that is not created through its Lambda API, and the one it
    runs invokes the function inside the table's write; the local cloud polls the stream
    (:mod:`local_stack.stream_delivery`)."""

    function_logical_id: str
    event_name: str
    table_logical_id: str
    starting_position: str
    batch_size: int
    maximum_retry_attempts: int  # -1: until the record expires
    bisect_batch_on_function_error: bool
    report_batch_item_failures: bool
    filter_patterns: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class LayerSpec:
    logical_id: str
    arn: str
    content_uri: Path


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_uri: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    role_arn: str
    environment: Mapping[str, str]
    layers: tuple[LayerSpec, ...]
    external_layer_arns: tuple[str, ...]
    api_routes: tuple[ApiRoute, ...]
    schedules: tuple[ScheduleSpec, ...] = ()
    event_rules: tuple[EventRuleSpec, ...] = ()
    stream_sources: tuple[StreamSourceSpec, ...] = ()
    # ReservedConcurrentExecutions: at most this many execution environments at once (None: not reserved).
    reserved_concurrent_executions: int | None = None
    # EventInvokeConfig's MaximumEventAgeInSeconds: how long an asynchronous event is retried while throttled.
    maximum_event_age_seconds: int = DEFAULT_MAXIMUM_EVENT_AGE_SECONDS


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    type: str
    role_arn: str
    definition_path: Path | None
    definition: Mapping[str, Any]
    substitutions: Mapping[str, str]


@dataclass(frozen=True)
class BucketSpec:
    logical_id: str
    name: str
    arn: str
    encryption_rules: tuple[Mapping[str, Any], ...]
    public_access_block: Mapping[str, bool] | None


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    arn: str
    key_schema: tuple[Mapping[str, str], ...]
    attribute_definitions: tuple[Mapping[str, str], ...]
    global_secondary_indexes: tuple[Mapping[str, Any], ...]
    billing_mode: str
    provisioned_throughput: Mapping[str, int] | None
    ttl_attribute: str | None
    point_in_time_recovery: bool
    sse_enabled: bool
    stream_view_type: str | None = None  # StreamSpecification.StreamViewType; None: no stream


@dataclass(frozen=True)
class ApiSpec:
    logical_id: str
    api_id: str
    stage_name: str
    default_authorizer: str | None
    binary_media_types: tuple[str, ...]


class TemplateModel:
    """The template, evaluated for one stack name, region, account and set of parameter values."""

    def __init__(
        self,
        template_path: Path | str,
        *,
        stack_name: str,
        parameter_overrides: Mapping[str, str] | None = None,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        self.template_path = Path(template_path).resolve()
        self.template_dir = self.template_path.parent
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        document = load_template_document(self.template_path)
        self.parameters = resolve_parameters(document.get("Parameters") or {}, parameter_overrides or {})
        pseudo: dict[str, str | list[str]] = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:{PARTITION}:cloudformation:{region}:{account_id}:stack/{stack_name}/"
            + _stable_suffix(stack_name, length=32).lower(),
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::NotificationARNs": [],
        }
        conditions = document.get("Conditions") or {}
        mappings = document.get("Mappings") or {}

        def evaluator(resources: Mapping[str, PhysicalResource]) -> IntrinsicEvaluator:
            return IntrinsicEvaluator(
                parameters=self.parameters,
                pseudo_parameters=pseudo,
                resources=resources,
                conditions=conditions,
                mappings=mappings,
            )

        # Names may only depend on parameters and pseudo parameters, so they are evaluated without resources.
        naming_evaluator = evaluator({})
        self._resources = {
            logical_id: definition
            for logical_id, definition in _apply_globals(document).items()
            if "Condition" not in definition
            or naming_evaluator.condition(definition["Condition"], f"Resources.{logical_id}.Condition")
        }
        self.physical = self._plan_physical_resources(naming_evaluator)
        self._evaluator = evaluator(self.physical)

    # -- evaluation --------------------------------------------------------------------------------------------------

    def evaluate(self, value: Any, where: str = "value") -> Any:
        """Evaluate a template value against this model's parameters and physical resources."""
        return self._evaluator.evaluate(value, where)

    def resource_types(self) -> dict[str, str]:
        """Logical id -> type of every resource whose Condition (if any) holds."""
        return {logical_id: definition["Type"] for logical_id, definition in self._resources.items()}

    def _property(self, logical_id: str, name: str, default: Any = None) -> Any:
        """One evaluated property; only the properties the local cloud uses are evaluated."""
        properties = self._resources[logical_id]["Properties"]
        if name not in properties:
            return default
        value = self.evaluate(properties[name], f"Resources.{logical_id}.Properties.{name}")
        return default if value is NO_VALUE else value

    def _has_property(self, logical_id: str, name: str) -> bool:
        return name in self._resources[logical_id]["Properties"]

    def _of_type(self, types: tuple[str, ...]) -> list[str]:
        return [logical_id for logical_id, definition in self._resources.items() if definition["Type"] in types]

    def _plan_physical_resources(self, naming_evaluator: IntrinsicEvaluator) -> dict[str, PhysicalResource]:
        physical: dict[str, PhysicalResource] = {}
        for logical_id, definition in self._resources.items():
            naming = _NAMING.get(definition["Type"])
            if naming is None:
                continue
            properties = definition["Properties"]
            if naming.name_property in properties:
                where = f"Resources.{logical_id}.Properties.{naming.name_property}"
                name = _scalar_to_string(naming_evaluator.evaluate(properties[naming.name_property], where), where)
            elif definition["Type"] in LAYER_TYPES:
                name = logical_id  # SAM's default LayerName
            else:
                name = generated_name(self.stack_name, logical_id, naming.max_length)
            if naming.lowercase:
                name = name.lower()
            ref, attributes = naming.build(name, self.region, self.account_id)
            physical[logical_id] = PhysicalResource(definition["Type"], ref, attributes)
            if definition["Type"] in _IMPLICIT_ROLE_TYPES and "Role" not in properties:
                role_id = f"{logical_id}Role"
                role_ref, role_attributes = _role(
                    generated_name(self.stack_name, role_id, 64), self.region, self.account_id
                )
                physical[role_id] = PhysicalResource("AWS::IAM::Role", role_ref, role_attributes)
        if any(route.api_logical_id == IMPLICIT_API_LOGICAL_ID for route in self._raw_api_routes()):
            ref, attributes = _rest_api(f"{self.stack_name}-{IMPLICIT_API_LOGICAL_ID}", self.region, self.account_id)
            physical[IMPLICIT_API_LOGICAL_ID] = PhysicalResource("AWS::Serverless::Api", ref, attributes)
        return physical

    def _raw_api_routes(self) -> Iterator[ApiRoute]:
        """Api events of every function; RestApiId is read as a plain Ref so it can be used before the table exists."""
        for logical_id in self._of_type(FUNCTION_TYPES):
            events = self._resources[logical_id]["Properties"].get("Events") or {}
            for event_name, event in events.items():
                if event.get("Type") != "Api":
                    continue
                where = f"Resources.{logical_id}.Properties.Events.{event_name}"
                properties = event.get("Properties") or {}
                rest_api = properties.get("RestApiId")
                if rest_api is None:
                    api_logical_id = IMPLICIT_API_LOGICAL_ID
                elif isinstance(rest_api, dict) and list(rest_api) == ["Ref"]:
                    api_logical_id = rest_api["Ref"]
                else:
                    raise TemplateError(f"{where}.RestApiId: the local cloud needs a Ref to an Api in this template")
                path, method = properties.get("Path"), properties.get("Method")
                if not isinstance(path, str) or not path.startswith("/") or not isinstance(method, str):
                    raise TemplateError(f"{where}: an Api event needs a Path starting with / and a Method")
                authorizer = (properties.get("Auth") or {}).get("Authorizer")
                if authorizer is not None and not isinstance(authorizer, str):
                    raise TemplateError(f"{where}.Auth.Authorizer: expected a name, got {authorizer!r}")
                yield ApiRoute(logical_id, event_name, api_logical_id, path, method.upper(), authorizer)

    # -- views -------------------------------------------------------------------------------------------------------

    @cached_property
    def layers(self) -> dict[str, LayerSpec]:
        return {
            logical_id: LayerSpec(
                logical_id=logical_id,
                arn=self.physical[logical_id].ref,
                content_uri=self._local_path(logical_id, "ContentUri"),
            )
            for logical_id in self._of_type(LAYER_TYPES)
        }

    @cached_property
    def functions(self) -> dict[str, FunctionSpec]:
        routes_by_function: dict[str, list[ApiRoute]] = {}
        for route in self._raw_api_routes():
            if route.api_logical_id not in self.apis:
                raise TemplateError(
                    f"Resources.{route.function_logical_id}.Properties.Events.{route.event_name}: "
                    f"RestApiId refers to {route.api_logical_id!r}, which is not an AWS::Serverless::Api here"
                )
            routes_by_function.setdefault(route.function_logical_id, []).append(route)
        return {
            logical_id: self._function(logical_id, tuple(routes_by_function.get(logical_id, ())))
            for logical_id in self._of_type(FUNCTION_TYPES)
        }

    def _function(self, logical_id: str, routes: tuple[ApiRoute, ...]) -> FunctionSpec:
        where = f"Resources.{logical_id}.Properties"
        if self._has_property(logical_id, "InlineCode") or self._property(logical_id, "PackageType") == "Image":
            raise TemplateError(f"{where}: only CodeUri (a local directory) is supported by the local cloud")
        for required in ("Handler", "Runtime"):
            if not self._has_property(logical_id, required):
                raise TemplateError(f"{where}: {required} is missing")
        variables = (self._property(logical_id, "Environment") or {}).get("Variables") or {}
        layer_arns = [_scalar_to_string(arn, f"{where}.Layers") for arn in self._property(logical_id, "Layers", [])]
        layers_by_arn = {layer.arn: layer for layer in self.layers.values()}
        return FunctionSpec(
            logical_id=logical_id,
            name=self.physical[logical_id].ref,
            arn=self.physical[logical_id].attributes["Arn"],
            code_uri=self._local_path(logical_id, "CodeUri"),
            handler=_scalar_to_string(self._property(logical_id, "Handler"), f"{where}.Handler"),
            runtime=_scalar_to_string(self._property(logical_id, "Runtime"), f"{where}.Runtime"),
            timeout=int(self._property(logical_id, "Timeout", DEFAULT_FUNCTION_TIMEOUT_SECONDS)),
            memory_size=int(self._property(logical_id, "MemorySize", DEFAULT_FUNCTION_MEMORY_MB)),
            role_arn=self._role_arn(logical_id),
            environment={
                name: _scalar_to_string(value, f"{where}.Environment.Variables.{name}")
                for name, value in variables.items()
            },
            layers=tuple(layers_by_arn[arn] for arn in layer_arns if arn in layers_by_arn),
            external_layer_arns=tuple(arn for arn in layer_arns if arn not in layers_by_arn),
            api_routes=routes,
            schedules=tuple(self._schedules(logical_id)),
            event_rules=tuple(self._event_rules(logical_id)),
            stream_sources=tuple(self._stream_sources(logical_id)),
            reserved_concurrent_executions=self._reserved_concurrency(logical_id),
            maximum_event_age_seconds=self._maximum_event_age(logical_id),
        )

    def _maximum_event_age(self, logical_id: str) -> int:
        config = self._property(logical_id, "EventInvokeConfig") or {}
        age = config.get("MaximumEventAgeInSeconds", DEFAULT_MAXIMUM_EVENT_AGE_SECONDS)
        if not str(age).isdigit() or not 60 <= int(age) <= DEFAULT_MAXIMUM_EVENT_AGE_SECONDS:
            where = f"Resources.{logical_id}.Properties.EventInvokeConfig.MaximumEventAgeInSeconds"
            raise TemplateError(f"{where}: 60 to 21600 seconds, not {age!r}")
        return int(age)

    def _reserved_concurrency(self, logical_id: str) -> int | None:
        reserved = self._property(logical_id, "ReservedConcurrentExecutions")
        if reserved is None:
            return None
        if not str(reserved).isdigit():
            where = f"Resources.{logical_id}.Properties.ReservedConcurrentExecutions"
            raise TemplateError(f"{where}: a whole number of environments, not {reserved!r}")
        return int(reserved)

    def _schedules(self, logical_id: str) -> Iterator[ScheduleSpec]:
        for event_name, event in (self._resources[logical_id]["Properties"].get("Events") or {}).items():
            if event.get("Type") not in ("Schedule", "ScheduleV2"):
                continue
            where = f"Resources.{logical_id}.Properties.Events.{event_name}"
            properties = event.get("Properties") or {}
            expression = _scalar_to_string(self.evaluate(properties.get("ScheduleExpression"), where), where)
            if "Enabled" in properties:  # Schedule's older switch
                enabled = _is_true(self.evaluate(properties["Enabled"], f"{where}.Enabled"))
            else:
                state = self.evaluate(properties.get("State", "ENABLED"), f"{where}.State")
                if state not in ("ENABLED", "DISABLED"):
                    raise TemplateError(f"{where}.State: ENABLED or DISABLED, not {state!r}")
                enabled = state == "ENABLED"
            yield ScheduleSpec(logical_id, event_name, expression, enabled)

    def _event_rules(self, logical_id: str) -> Iterator[EventRuleSpec]:
        for event_name, event in (self._resources[logical_id]["Properties"].get("Events") or {}).items():
            if event.get("Type") != "EventBridgeRule":
                continue
            where = f"Resources.{logical_id}.Properties.Events.{event_name}"
            properties = event.get("Properties") or {}
            bus = _scalar_to_string(self.evaluate(properties.get("EventBusName", "default"), where), where)
            pattern = self.evaluate(properties.get("Pattern"), f"{where}.Pattern")
            if not isinstance(pattern, dict) or not pattern:
                raise TemplateError(f"{where}.Pattern: an event pattern (a mapping) is required")
            state = self.evaluate(properties.get("State", "ENABLED"), f"{where}.State")
            if state not in ("ENABLED", "DISABLED"):
                raise TemplateError(f"{where}.State: ENABLED or DISABLED, not {state!r}")
            yield EventRuleSpec(logical_id, event_name, bus, pattern, state == "ENABLED")

    def _stream_sources(self, logical_id: str) -> Iterator[StreamSourceSpec]:
        for event_name, event in (self._resources[logical_id]["Properties"].get("Events") or {}).items():
            if event.get("Type") != "DynamoDB":
                continue
            where = f"Resources.{logical_id}.Properties.Events.{event_name}"
            properties = event.get("Properties") or {}
            stream = properties.get("Stream")
            attribute = stream.get("Fn::GetAtt") if isinstance(stream, dict) and len(stream) == 1 else None
            if isinstance(attribute, str):
                attribute = attribute.split(".", 1)
            if not (isinstance(attribute, list) and len(attribute) == 2 and attribute[1] == "StreamArn"):
                raise TemplateError(f"{where}.Stream: the local cloud needs !GetAtt <Table>.StreamArn of this template")
            table_logical_id = attribute[0]
            if table_logical_id not in self._of_type(TABLE_TYPES):
                raise TemplateError(f"{where}.Stream: {table_logical_id!r} is not an AWS::DynamoDB::Table here")
            position = self.evaluate(properties.get("StartingPosition"), f"{where}.StartingPosition")
            if position not in ("TRIM_HORIZON", "LATEST"):
                raise TemplateError(f"{where}.StartingPosition: TRIM_HORIZON or LATEST, not {position!r}")
            filters = ((properties.get("FilterCriteria") or {}).get("Filters")) or ()
            yield StreamSourceSpec(
                function_logical_id=logical_id,
                event_name=event_name,
                table_logical_id=table_logical_id,
                starting_position=position,
                batch_size=int(self.evaluate(properties.get("BatchSize", 100), f"{where}.BatchSize")),
                maximum_retry_attempts=int(
                    self.evaluate(properties.get("MaximumRetryAttempts", -1), f"{where}.MaximumRetryAttempts")
                ),
                bisect_batch_on_function_error=_is_true(properties.get("BisectBatchOnFunctionError", False)),
                report_batch_item_failures="ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or ()),
                filter_patterns=tuple(json.loads(item["Pattern"]) for item in filters),
            )

    @cached_property
    def event_buses(self) -> dict[str, str]:
        """The template's event buses: logical id -> name."""
        return {logical_id: self.physical[logical_id].ref for logical_id in self._of_type(("AWS::Events::EventBus",))}

    @cached_property
    def state_machines(self) -> dict[str, StateMachineSpec]:
        return {logical_id: self._state_machine(logical_id) for logical_id in self._of_type(STATE_MACHINE_TYPES)}

    def _state_machine(self, logical_id: str) -> StateMachineSpec:
        where = f"Resources.{logical_id}.Properties"
        substitutions = {
            key: _scalar_to_string(value, f"{where}.DefinitionSubstitutions.{key}")
            for key, value in self._property(logical_id, "DefinitionSubstitutions", {}).items()
        }
        definition_path: Path | None = None
        if self._has_property(logical_id, "DefinitionUri"):
            definition_path = self._local_path(logical_id, "DefinitionUri")
            try:
                raw_definition = json.loads(definition_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise TemplateError(f"{where}.DefinitionUri: cannot read {definition_path}: {error}") from error
        elif self._has_property(logical_id, "Definition"):
            raw_definition = self._property(logical_id, "Definition")
        else:
            raise TemplateError(f"{where}: a state machine needs DefinitionUri or Definition")
        return StateMachineSpec(
            logical_id=logical_id,
            name=self.physical[logical_id].attributes["Name"],
            arn=self.physical[logical_id].ref,
            type=_scalar_to_string(self._property(logical_id, "Type", "STANDARD"), f"{where}.Type"),
            role_arn=self._role_arn(logical_id),
            definition_path=definition_path,
            definition=substitute_definition(raw_definition, substitutions, f"{where}.Definition"),
            substitutions=substitutions,
        )

    @cached_property
    def buckets(self) -> dict[str, BucketSpec]:
        return {
            logical_id: BucketSpec(
                logical_id=logical_id,
                name=self.physical[logical_id].ref,
                arn=self.physical[logical_id].attributes["Arn"],
                encryption_rules=tuple(
                    self._property(logical_id, "BucketEncryption", {}).get("ServerSideEncryptionConfiguration") or ()
                ),
                public_access_block=self._property(logical_id, "PublicAccessBlockConfiguration"),
            )
            for logical_id in self._of_type(BUCKET_TYPES)
        }

    @cached_property
    def tables(self) -> dict[str, TableSpec]:
        tables = {}
        for logical_id in self._of_type(TABLE_TYPES):
            ttl = self._property(logical_id, "TimeToLiveSpecification", {})
            pitr = self._property(logical_id, "PointInTimeRecoverySpecification", {})
            sse = self._property(logical_id, "SSESpecification", {})
            tables[logical_id] = TableSpec(
                logical_id=logical_id,
                name=self.physical[logical_id].ref,
                arn=self.physical[logical_id].attributes["Arn"],
                key_schema=tuple(self._property(logical_id, "KeySchema", ())),
                attribute_definitions=tuple(self._property(logical_id, "AttributeDefinitions", ())),
                global_secondary_indexes=tuple(self._property(logical_id, "GlobalSecondaryIndexes", ())),
                billing_mode=self._property(logical_id, "BillingMode", "PROVISIONED"),
                provisioned_throughput=self._property(logical_id, "ProvisionedThroughput"),
                ttl_attribute=ttl.get("AttributeName") if _is_true(ttl.get("Enabled")) else None,
                point_in_time_recovery=_is_true(pitr.get("PointInTimeRecoveryEnabled")),
                sse_enabled=_is_true(sse.get("SSEEnabled")),
                stream_view_type=(self._property(logical_id, "StreamSpecification") or {}).get("StreamViewType"),
            )
        return tables

    @cached_property
    def apis(self) -> dict[str, ApiSpec]:
        apis = {}
        for logical_id in self._of_type(API_TYPES):
            where = f"Resources.{logical_id}.Properties"
            if not self._has_property(logical_id, "StageName"):
                raise TemplateError(f"{where}: StageName is missing")
            apis[logical_id] = ApiSpec(
                logical_id=logical_id,
                api_id=self.physical[logical_id].ref,
                stage_name=_scalar_to_string(self._property(logical_id, "StageName"), f"{where}.StageName"),
                default_authorizer=self._property(logical_id, "Auth", {}).get("DefaultAuthorizer"),
                binary_media_types=tuple(self._property(logical_id, "BinaryMediaTypes", ())),
            )
        if IMPLICIT_API_LOGICAL_ID in self.physical:
            apis[IMPLICIT_API_LOGICAL_ID] = ApiSpec(
                logical_id=IMPLICIT_API_LOGICAL_ID,
                api_id=self.physical[IMPLICIT_API_LOGICAL_ID].ref,
                stage_name=IMPLICIT_API_STAGE,
                default_authorizer=None,
                binary_media_types=(),
            )
        return apis

    @property
    def state_machine(self) -> StateMachineSpec:
        return _only(self.state_machines, "state machine")

    @property
    def bucket(self) -> BucketSpec:
        return _only(self.buckets, "S3 bucket")

    @property
    def table(self) -> TableSpec:
        """The jobs table (JobsTable)."""
        return self._table(JOBS_TABLE)

    @property
    def caller_mappings_table(self) -> TableSpec:
        """Who each caller's jobs run as (CallerMappingsTable)."""
        return self._table(CALLER_MAPPINGS_TABLE)

    def _table(self, logical_id: str) -> TableSpec:
        if logical_id not in self.tables:
            raise TemplateError(f"the template has no {logical_id} (an AWS::DynamoDB::Table)")
        return self.tables[logical_id]

    @property
    def api(self) -> ApiSpec:
        return _only(self.apis, "REST API")

    def _role_arn(self, logical_id: str) -> str:
        if self._has_property(logical_id, "Role"):
            return _scalar_to_string(self._property(logical_id, "Role"), f"Resources.{logical_id}.Properties.Role")
        return self.physical[f"{logical_id}Role"].attributes["Arn"]

    def _local_path(self, logical_id: str, name: str) -> Path:
        """A path property (CodeUri, ContentUri, DefinitionUri): relative to the template, and it must exist."""
        where = f"Resources.{logical_id}.Properties.{name}"
        return _local_path(self.template_dir, where, self._property(logical_id, name))


def _local_path(template_dir: Path, where: str, value: Any) -> Path:
    if not isinstance(value, str):
        raise TemplateError(f"{where}: the local cloud needs a local path, got {value!r}")
    path = (template_dir / value).resolve()
    if not path.exists():
        raise TemplateError(f"{where}: {path} does not exist")
    return path


def layer_content_uris(template_path: Path) -> list[Path]:
    """The local ContentUri of each layer of the template, in template order, without evaluating the template (no
    parameter values needed): a ContentUri must be a plain relative path, as :attr:`TemplateModel.layers` requires."""
    template_path = Path(template_path).resolve()
    resources = load_template_document(template_path)["Resources"]
    return [
        _local_path(template_path.parent, f"Resources.{logical_id}.Properties.ContentUri", content_uri)
        for logical_id, definition in resources.items()
        if definition.get("Type") in LAYER_TYPES
        and (content_uri := (definition.get("Properties") or {}).get("ContentUri")) is not None
    ]


def function_variable_names(template_path: Path) -> set[str]:
    """The names of every environment variable that the template gives a function (its own or the Globals')."""
    document = load_template_document(Path(template_path))
    sections = [((document.get("Globals") or {}).get("Function") or {})]
    sections += [definition.get("Properties") or {} for definition in document["Resources"].values()]
    return {
        name
        for section in sections
        if isinstance(variables := (section.get("Environment") or {}).get("Variables"), dict)
        for name in variables
    }


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _only[T](items: Mapping[str, T], what: str) -> T:
    if len(items) != 1:
        raise TemplateError(f"expected exactly one {what} in the template, found {len(items)}: {sorted(items)}")
    return next(iter(items.values()))


_DEFINITION_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")


def substitute_definition(definition: Any, substitutions: Mapping[str, str], where: str) -> Any:
    """Replace ``${Name}`` in every string of an ASL definition, as DefinitionSubstitutions does.

    A placeholder without a substitution is an error: deployed, it would stay in the definition as literal text.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise TemplateError(f"{where}: ${{{name}}} has no entry in DefinitionSubstitutions")
        return substitutions[name]

    if isinstance(definition, str):
        return _DEFINITION_PLACEHOLDER.sub(replace, definition)
    if isinstance(definition, dict):
        return {key: substitute_definition(value, substitutions, where) for key, value in definition.items()}
    if isinstance(definition, list):
        return [substitute_definition(item, substitutions, where) for item in definition]
    return definition

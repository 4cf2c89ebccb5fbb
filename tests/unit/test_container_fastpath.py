"""The invoke route's hot path: the CSV/JSON fast path answers exactly as the built-in program's hooks do,
the direct dispatch routes exactly as Starlette's router does, and a body already there is read without a timer."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from container import fastpath
from container.app import invoke_target
from container.bodies import read_body
from container.fastpath import MIRRORED_HOOKS_SHA256, CsvJsonFastPath, hooks_digest
from container.programs import STACK
from container.settings import DEFAULT_SUBMIT_DIRECTORY
from endpoint.program import InferenceProgram, RequestContext
from tests.container_harness import complete_forest

BUILT_IN = DEFAULT_SUBMIT_DIRECTORY / "inference.py"
CONTEXT = RequestContext(target_model="m", content_type="text/csv", accept="application/json")


@pytest.fixture(scope="module")
def program() -> InferenceProgram:
    return InferenceProgram.from_file(BUILT_IN, STACK)


@pytest.fixture(scope="module")
def model(program: InferenceProgram, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Loaded the way the container loads it: the program's model_fn, memory-mapped (so unaligned arrays)
    model_dir = tmp_path_factory.mktemp("model")
    (model_dir / "forest.npz").write_bytes(complete_forest(n_trees=20, depth=6, seed=3))
    return program.model_fn.func(str(model_dir))


@pytest.fixture(scope="module")
def fast(program: InferenceProgram) -> CsvJsonFastPath:
    path = CsvJsonFastPath.for_program(program)
    assert path is not None
    return path


def test_the_fast_path_is_pinned_to_the_hooks_it_mirrors() -> None:
    from training import inference

    assert hooks_digest(inference) == MIRRORED_HOOKS_SHA256, (
        "training/inference.py's CSV/JSON hooks changed: check that container/fastpath.py still answers as they "
        "do (tests below), then set MIRRORED_HOOKS_SHA256 to the new digest; until then the fast path is off"
    )


# A plain decimal number as clients write them, below 1e37: what the fast path takes.
_digits = st.text("0123456789", min_size=1, max_size=12)
_number = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
    st.sampled_from(["", "-"]),
    _digits,
    st.one_of(st.just(""), st.just("."), _digits.map(lambda d: "." + d)),
    st.one_of(
        st.just(""),
        st.builds(
            lambda e, s, d: f"{e}{s}{d}",
            st.sampled_from("eE"),
            st.sampled_from(["", "+", "-"]),
            st.integers(0, 24).map(str),
        ),
    ),
)
_row = st.lists(_number, min_size=6, max_size=6).map(",".join)
_ending = st.sampled_from(["", "\n", "\r\n", "\n\n"])


@settings(max_examples=400, deadline=None)
@given(row=_row, ending=_ending)
def test_one_row_answers_byte_for_byte_as_the_hooks(
    program: InferenceProgram, model: Any, fast: CsvJsonFastPath, row: str, ending: str
) -> None:
    body = (row + ending).encode()
    got = fast.invoke(model, body)
    assert got is not None
    assert got == program.invoke(model, body, CONTEXT)


@pytest.mark.parametrize(
    "text",
    [
        "1995,3000,4,2.5,1.0,2",
        "0,0,0,0,0,0\n",
        "-0,-0.0,.5,5.,1e3,1E-3",
        "1995,3000,4,2.5,1.0,2\r\n",
        "99999999999999999999,3000,4,2.5,1.0,2",
        "1e37,3000,4,2.5,1.0,2",
    ],
)
def test_everyday_rows_answer_as_the_hooks(
    program: InferenceProgram, model: Any, fast: CsvJsonFastPath, text: str
) -> None:
    answer = fast.invoke(model, text.encode())
    assert answer == program.invoke(model, text.encode(), CONTEXT)
    assert answer is not None
    assert answer.content_type == "application/json"
    assert len(json.loads(answer.body)) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",  # the hooks' "empty text/csv body"
        "1995,3000,4,2.5,1.0",  # five fields
        "1995,3000,4,2.5,1.0,2,7",  # seven
        "1995,3000,4,2.5,1.0,2\n1996,3000,4,2.5,1.0,2",  # two rows: the generic batch walk
        " 1995,3000,4,2.5,1.0,2",  # whitespace anywhere but the line end
        "1995, 3000,4,2.5,1.0,2",
        "YEAR,SQFT,BEDS,BATHS,LOT,GARAGE",
        "nan,3000,4,2.5,1.0,2",
        "inf,3000,4,2.5,1.0,2",
        "1e999,3000,4,2.5,1.0,2",  # a double's infinity
        "4e38,3000,4,2.5,1.0,2",  # finite as a double, infinite as float32
        "1_995,3000,4,2.5,1.0,2",  # float() reads it, np.loadtxt does not
        "+1995,3000,4,2.5,1.0,2",
        "0x10,3000,4,2.5,1.0,2",
        "١٩٩٥,3000,4,2.5,1.0,2",  # digits float() knows that the grammar does not
        "1995;3000;4;2.5;1.0;2",
    ],
)
def test_anything_else_is_left_to_the_hooks(model: Any, fast: CsvJsonFastPath, text: str) -> None:
    assert fast.invoke(model, text.encode()) is None


def test_a_model_that_is_not_a_packed_forest_is_left_to_the_hooks(fast: CsvJsonFastPath) -> None:
    from training.inference import UnservableModel

    assert fast.invoke(UnservableModel("broken"), b"1995,3000,4,2.5,1.0,2") is None


def test_only_the_program_it_mirrors_gets_it(tmp_path: Path) -> None:
    # An identical copy elsewhere (an operator's SAGEMAKER_SUBMIT_DIRECTORY) answers the same: it gets it
    same = tmp_path / "same" / "inference.py"
    same.parent.mkdir()
    shutil.copy(BUILT_IN, same)
    assert CsvJsonFastPath.for_program(InferenceProgram.from_file(same, STACK)) is not None
    # A program whose output_fn differs does not, nor one whose constants differ, nor one relying on defaults
    edited = tmp_path / "edited" / "inference.py"
    edited.parent.mkdir()
    edited.write_text(BUILT_IN.read_text().replace("return json.dumps(values.tolist())", "return json.dumps(values)"))
    assert CsvJsonFastPath.for_program(InferenceProgram.from_file(edited, STACK)) is None
    constants = tmp_path / "constants" / "inference.py"
    constants.parent.mkdir()
    constants.write_text(BUILT_IN.read_text().replace('JSON = "application/json"', 'JSON = "application/vnd+json"'))
    assert CsvJsonFastPath.for_program(InferenceProgram.from_file(constants, STACK)) is None
    defaults = tmp_path / "defaults" / "inference.py"
    defaults.parent.mkdir()
    defaults.write_text("def model_fn(model_dir):\n    return None\n")
    assert CsvJsonFastPath.for_program(InferenceProgram.from_file(defaults, STACK)) is None


def test_the_mirrored_hook_list_names_what_a_csv_to_json_request_runs() -> None:
    assert set(fastpath.MIRRORED_HOOKS) >= {"input_fn", "predict_fn", "output_fn", "_as_feature_matrix"}


# --------------------------------------------------------------------------- dispatch


INVOKE_ROUTE = Route("/models/{model_name}/invoke", lambda scope, receive, send: None, methods=["POST"])


@pytest.mark.parametrize(
    "path",
    [
        "/models/a/invoke",
        "/models/model-001/invoke",
        "/models/ a b /invoke",
        "/models/é/invoke",
        "/models/a\nb/invoke",
        "/models//invoke",
        "/models/a/b/invoke",
        "/models/a/invoke/",
        "/models/a/invoke\n",
        "/models/invoke",
        "/models/a/invoked",
        "/models/a",
        "/ping",
        "/models",
        "//models/a/invoke",
    ],
)
def test_direct_dispatch_takes_exactly_the_paths_starlette_would_route_to_invoke(path: str) -> None:
    match = INVOKE_ROUTE.path_regex.match(path)
    starlette_name = match["model_name"] if match else None
    taken = invoke_target(path)
    # Every path taken directly is Starlette's invoke route with the same name; the rest go to Starlette
    assert taken is None or taken == starlette_name
    if path.endswith("/invoke") and starlette_name is not None and "\n" not in path:
        assert taken == starlette_name


# --------------------------------------------------------------------------- bodies


def test_a_body_already_received_is_read_without_waiting() -> None:
    async def ready() -> dict[str, Any]:
        return {"type": "http.request", "body": b"1,2", "more_body": False}

    assert asyncio.run(read_body(ready, b"3", 100, timeout=0.001)) == b"1,2"


def test_a_body_still_arriving_is_read_under_the_deadline_with_nothing_lost() -> None:
    async def scenario() -> bytes:
        event = asyncio.Event()
        messages = [{"type": "http.request", "body": b"late", "more_body": False}]
        calls = 0

        async def receive() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            await event.wait()  # as uvicorn's receive waits for its message event, then takes the message
            return messages.pop()

        asyncio.get_running_loop().call_later(0.01, event.set)
        body = await read_body(receive, None, 100, timeout=5)
        assert calls == 2  # the first, unfinished attempt was closed and the timed read started afresh
        return body

    assert asyncio.run(scenario()) == b"late"


def test_a_body_that_never_arrives_is_still_a_timeout() -> None:
    from container.errors import RequestTimeout

    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(RequestTimeout):
        asyncio.run(read_body(never, None, 100, timeout=0.05))


@pytest.fixture
def apps(tmp_path: Path) -> tuple[Any, Any]:
    """(the worker's app, the Starlette app behind it), built as a worker builds them; no model loaded."""
    from container.app import create_app
    from container.programs import Programs
    from container.settings import ContainerSettings

    settings = ContainerSettings.from_env(
        {"CONTAINER_MEMORY_BUDGET_BYTES": str(1 << 30), "CONTAINER_MODEL_ROOT": str(tmp_path), "CONTAINER_WORKERS": "1"}
    )
    state = tmp_path / "state"
    state.mkdir()
    app = create_app(settings, Programs.from_file(BUILT_IN, allow_model_code=False), state)
    return app, app.starlette


def _call(app: Any, headers: dict[str, str], body: bytes = b"1,2,3,4,5,6") -> tuple[int, dict[str, str], bytes]:
    import httpx

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://container") as client:
            return await client.post("/models/m/invoke", content=body, headers=headers)

    response = asyncio.run(go())
    return response.status_code, dict(response.headers), response.content


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/csv"},  # not loaded: 404
        {"content-type": "text/csv", "x-amzn-sagemaker-custom-attributes": "\x7f"},  # 400
        {"content-type": "text/csv", "content-length": "99999999"},  # 413, unread
    ],
)
def test_direct_dispatch_answers_errors_as_starlette_does(apps: tuple[Any, Any], headers: dict[str, str]) -> None:
    app, starlette = apps
    direct = _call(app, headers)
    routed = _call(starlette, headers)
    assert direct == routed
    assert direct[0] in (400, 404, 413)
    assert json.loads(direct[2])["code"] == direct[0]


def test_an_unexpected_failure_is_a_500_and_raised_again_either_way(
    apps: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, starlette = apps

    def broken(name: str) -> None:
        raise RuntimeError("registry broke")

    monkeypatch.setattr(app.state.worker.models, "find", broken)
    for each in (app, starlette):
        # Starlette answers 500 then raises again (uvicorn logs it and closes the connection)
        with pytest.raises(RuntimeError, match="registry broke"):
            _call(each, {"content-type": "text/csv"})

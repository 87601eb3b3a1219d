"""The behaviour cases both SDKs run (`sdk_probe.py cases`), made from Cog's surface.

Calls: every public function, class and static or class method that Cog's surface lists is
called with each typical and bad value for each of its parameters (chosen by the parameter's
name or its annotation in Cog's signature), one parameter at a time, the others at a typical
value. Scenarios: what a single call cannot show (subclassing `BaseModel` and `BaseRunner`,
loading a runner from a file and the deprecation warnings that gives, abstract iterator types,
pickling, the retired names, metrics outside a prediction), each a few lines of Python whose
last line is the expression whose value is compared.
"""

from __future__ import annotations

import textwrap
from typing import Any

# What every case starts from: Cog's public modules and some values to pass.
PRELUDE = """
import dataclasses, enum, io, os, pathlib, pickle, sys, tempfile, typing, warnings
{imports}

def fn():
    return "sync"

async def afn():
    return "async"

async def agen():
    yield "chunk"

class Color(str, enum.Enum):
    RED = "red"

class Runner(cog.BaseRunner):
    def setup(self, weights=None):
        self.weights = weights

    def run(self, prompt: str = "hi") -> str:
        return "ran " + prompt

class Legacy(cog.BasePredictor):
    def predict(self, prompt: str = "hi") -> str:
        return "predicted " + prompt

class Plain(cog.BaseRunner):
    def setup(self):
        pass

    def run(self) -> str:
        return "plain"

class JsonCoder(cog.coder.Coder):
    @staticmethod
    def factory(tpe):
        return JsonCoder() if tpe is complex else None

    def encode(self, x):
        return {{"re": x.real, "im": x.imag}}

    def decode(self, x):
        return complex(x["re"], x["im"])

def write(name, source):
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, name + ".py")
    with open(path, "w") as f:
        f.write(source)
    return path

def caught(expression):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        value = expression()
    return value, [(w.category.__name__, str(w.message)) for w in seen]
"""

URLS = [
    '"https://example.com/dir/a%20b+c.txt?q=1"',
    '"http://example.com/"',
    '"data:text/plain;base64,aGVsbG8="',
    '"data:,no%20type"',
    '"data:image/png;base64,iVBORw0KGgo="',
    '"https://example.com/" + "n" * 250 + ".txt"',
    '"https://example.com/%00x.txt"',
    '"ftp://example.com/f.bin"',
]
STRINGS = ['"hello"', '""', *URLS, '"file.txt"', "None", "1"]
ANY = [
    "None",
    '"x"',
    "0",
    "1.5",
    "True",
    "[1, 2]",
    '("a", "b")',
    '{"k": "v"}',
    'pathlib.Path("rel/x.png")',
    'cog.Path("/abs/y.txt")',
    'io.BytesIO(b"bytes")',
    'cog.Secret("s")',
    "Color.RED",
    *URLS[:3],
]
NUMBERS = ["None", "0", "1", "-2.5", "True", '"3"']

# Values for a parameter, by its annotation in Cog's signature; the first is a typical one.
POOLS: dict[str, list[str]] = {
    "str": STRINGS,
    "str | None": STRINGS,
    "Any": ANY,
    "object": ANY,
    "Any | type": ["int", "complex", "cog.Path", "None"],
    "type[Any]": ["int", "complex", "cog.Path", "None"],
    "type[Coder]": ["JsonCoder"],  # a class without `factory` would break later look-ups
    "BaseRunner": ["Runner()", "Plain()", "Legacy()", "object()"],
    "Callable[..., Any] | None": ["None", "fn", "list", "1"],
    "TypeVar(Callable[..., object]) | None": ["None", "fn", "afn", "agen", "1", '"x"'],
    "Path | str | None": ["None", '"weights.bin"', 'cog.Path("w")'],
    "bool": ["True", "False", "1", "None"],
    "bool | None": ["None", "True", "False", "1"],
    "dict[str, Any]": ['{"re": 1.0, "im": 2.0}', "{}", "None"],
    "float": ["1.5", "2", '"3"', "None"],
    "float | int | None": NUMBERS,
    "int": ["1", "2", "0", "-1", "True", "1.5", '"2"'],
    "int | None": ["None", "0", "5", "-1", '"3"', "1.5"],
    "io.IOBase": ['io.BytesIO(b"hi")', 'io.StringIO("hi")', "None"],
    "list[int | str] | None": ["None", '["a", "b"]', "[1, 2]", '("a",)', '"ab"', "[]"],
}
# Values by parameter name, where the name says more than the annotation.
BY_NAME: dict[str, list[str]] = {
    "url": [*URLS, '"hello"', '""', "None"],
    "ref": ['"no_such_file.py:Runner"', '"no_such_file.py"'],
    "source": ['"https://example.com/x.png"', '"data:,x"', '""'],
    "filename": ['"x.png"', '"n" * 300 + ".txt"', '""'],
}
# Called only in scenarios: whatever they return stays open (a context manager) or they read
# the environment.
NOT_CALLED = {"cog.suppress_output.suppress_output"}


def _pool(param: dict[str, Any]) -> list[str]:
    if param["name"] in BY_NAME:
        return BY_NAME[param["name"]]
    return POOLS.get(param["annotation"] or "Any", ANY)


def _render(params: list[dict[str, Any]], values: dict[str, str], extra: list[str]) -> str:
    positional, keywords = [], []
    for p in params:
        if p["name"] not in values:
            continue
        if p["kind"] == "POSITIONAL_ONLY" or (
            p["kind"] == "POSITIONAL_OR_KEYWORD" and p["required"]
        ):
            positional.append(values[p["name"]])
        else:
            keywords.append(f"{p['name']}={values[p['name']]}")
    return "(" + ", ".join(positional + extra + keywords) + ")"


def argument_lists(params: list[dict[str, Any]] | None) -> list[str]:
    """Each call's arguments: the typical call, then each parameter through its values."""
    if params is None:
        return ["()", '("x")']
    fixed = [p for p in params if p["kind"] not in ("VAR_POSITIONAL", "VAR_KEYWORD")]
    typical = {p["name"]: _pool(p)[0] for p in fixed if p["required"]}
    calls = [_render(params, typical, [])]
    for p in params:
        if p["kind"] == "VAR_KEYWORD":
            continue
        for value in _pool(p):
            if p["kind"] == "VAR_POSITIONAL":
                calls.append(_render(params, typical, [value]))
            else:
                calls.append(_render(params, {**typical, p["name"]: value}, []))
    return list(dict.fromkeys(calls))


def _init(item: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A class's call parameters; those of its `__init__` where the class's own cannot be
    read (Cog's URLFile: its `__wrapped__` property misleads `inspect.signature`)."""
    if item["params"] is not None:
        return list(item["params"])
    init = item.get("members", {}).get("__init__")
    return _without_receiver(init["params"]) if init else None


def _without_receiver(params: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    return params[1:] if params else params


def calls(surface: dict[str, Any]) -> list[tuple[str, str]]:
    """(id, code) for every call made from Cog's surface."""
    out = []
    for module, entry in sorted(surface.items()):
        for name, item in sorted(entry.get("names", {}).items()):
            target = f"{module}.{name}"
            if target in NOT_CALLED:
                continue
            if item.get("kind") == "function":
                out += [(target + args, target + args) for args in argument_lists(item["params"])]
            if item.get("kind") != "class":
                continue
            if "enum" in item:  # by each member's value, and one that is none
                values = [*item["enum"].values(), "'none of them'"]
                out += [(f"{target}({v})", f"{target}({v})") for v in values]
            else:
                out += [(target + args, target + args) for args in argument_lists(_init(item))]
            for member, desc in sorted(item.get("members", {}).items()):
                if member.startswith("__") or desc["kind"] not in ("staticmethod", "classmethod"):
                    continue
                params = desc["params"]
                if desc["kind"] == "classmethod":
                    params = _without_receiver(params)
                call = f"{target}.{member}"
                out += [(call + args, call + args) for args in argument_lists(params)]
    return out


def _code(text: str) -> str:
    return textwrap.dedent(text).strip()


LOADING = {
    # a module's source -> what loading it without and with a class name says
    "runner": "class Runner(cog.BaseRunner):\n    def run(self) -> str:\n        return 'r'\n",
    "predictor": (
        "class Predictor(cog.BasePredictor):\n    def predict(self) -> str:\n        return 'p'\n"
    ),
    "both_classes": (
        "class Runner(cog.BaseRunner):\n    def run(self) -> str:\n        return 'r'\n"
        "class Predictor(cog.BasePredictor):\n    def predict(self) -> str:\n        return 'p'\n"
    ),
    "both_methods": (
        "class Runner(cog.BaseRunner):\n    def run(self) -> str:\n        return 'r'\n"
        "    def predict(self) -> str:\n        return 'p'\n"
    ),
    "no_method_then_predictor": (
        "class Runner(cog.BaseRunner):\n    pass\n"
        "class Predictor(cog.BaseRunner):\n    def predict(self) -> str:\n        return 'p'\n"
    ),
    "no_method": "class Runner(cog.BaseRunner):\n    pass\n",
    "runner_function": "def Runner(x: int) -> int:\n    return x\n",
    "runner_constant": "Runner = 5\n",
    "nothing": "x = 1\n",
    "mixin_after": (
        "class Mixin:\n    def run(self) -> str:\n        return 'mixin'\n"
        "class Runner(cog.BaseRunner, Mixin):\n    def predict(self) -> str:\n        return 'p'\n"
    ),
}


def loading() -> list[tuple[str, str]]:
    out = []
    for name, source in LOADING.items():
        for suffix in ("", ":Runner", ":Predictor"):
            module = f"load_{name}_{suffix.strip(':').lower() or 'default'}"
            code = f"""
                path = write({module!r}, "import cog\\n" + {source!r})
                def load():
                    found = cog.predictor.load_predictor_from_ref(path + {suffix!r})
                    return type(found).__name__, callable(found)
                caught(load)
            """
            out.append((f"load_predictor_from_ref: {name}{suffix}", _code(code)))
    return out


SCENARIOS: list[tuple[str, str]] = [
    # Secret
    ("Secret: text", "[(str(cog.Secret(v)), repr(cog.Secret(v))) for v in (None, '', 'x')]"),
    (
        "Secret: equal, hashable, value",
        "s = cog.Secret('k')\n"
        "(s == cog.Secret('k'), s == 'k', hash(s) == hash(cog.Secret('k')), s.get_secret_value())",
    ),
    ("Secret: frozen", "s = cog.Secret('k')\ns.secret_value = 'changed'"),
    ("Secret: fields", "dataclasses.asdict(cog.Secret('k'))"),
    ("Secret: pickles", "pickle.loads(pickle.dumps(cog.Secret('k'))).get_secret_value()"),
    # Path, URLPath
    ("Path: joins to a Path", "p = cog.Path('/a') / 'b'\n(type(p).__name__, str(p))"),
    ("Path: is a pathlib.Path", "isinstance(cog.Path('x'), pathlib.Path)"),
    (
        "Path.validate: a data URL downloads on convert()",
        "p = cog.Path.validate('data:text/plain;base64,aGVsbG8=')\n"
        "c = p.convert()\n"
        "(type(p).__name__, str(p), p.name, p.filename, type(c).__name__, c.read_text(), "
        "c.name.endswith('file.txt'), p.convert() is c)",
    ),
    (
        "URLPath: unlink removes the download",
        "p = cog.Path.validate('data:,abc')\nc = p.convert()\np.unlink()\n"
        "(c.exists(), p.unlink(missing_ok=True))",
    ),
    (
        "Path.validate: an http URL is not fetched",
        "p = cog.Path.validate('https://example.com/a/b%20c.png')\n"
        "(type(p).__name__, str(p), p.name, p.filename, type(p.fileobj).__name__)",
    ),
    (
        "URLPath: a long name is cut",
        "p = cog.URLPath(source='s', filename='n' * 300 + '.tar.gz', fileobj=io.BytesIO())\n"
        "(len(p.filename.encode()), p.filename[-9:], p.name[-9:])",
    ),
    # File, URLFile
    (
        "File.validate: a data URL is read",
        "f = cog.File.validate('data:text/plain;base64,aGVsbG8=')\n(type(f).__name__, f.read())",
    ),
    (
        "File.validate: a file is kept",
        "b = io.BytesIO(b'x')\ncog.File.validate(b) is b",
    ),
    (
        # (pickling it, or `closed`, opens the URL, in Cog too: no case may reach the network)
        "URLFile: name and state",
        "u = cog.URLFile('https://example.com/a/b.bin?x=1')\n"
        "v = cog.URLFile.__new__(cog.URLFile)\n"
        "v.__setstate__({'name': 'n.bin', 'url': 'https://h/n.bin'})\n"
        "(u.name, u.__getstate__(), v.name, v.__getstate__(), u.readable())",
    ),
    (
        "URLFile: own filename",
        "u = cog.URLFile('https://example.com/a/b.bin', filename='given.txt')\nu.name",
    ),
    ("URLFile: is a file", "isinstance(cog.URLFile('http://h/x'), io.IOBase)"),
    # Iterator types
    ("ConcatenateIterator: abstract", "cog.ConcatenateIterator()"),
    ("AsyncConcatenateIterator: abstract", "cog.AsyncConcatenateIterator()"),
    (
        "ConcatenateIterator: a subclass iterates",
        "class Tokens(cog.ConcatenateIterator):\n"
        "    def __init__(self):\n"
        "        self.left = ['a', 'b']\n"
        "    def __next__(self):\n"
        "        if not self.left:\n"
        "            raise StopIteration\n"
        "        return self.left.pop(0)\n"
        "list(Tokens())",
    ),
    (
        "ConcatenateIterator[str]: a generic alias",
        "t = cog.ConcatenateIterator[str]\n"
        "(typing.get_origin(t) is cog.ConcatenateIterator, typing.get_args(t), "
        "typing.get_origin(cog.AsyncConcatenateIterator[int]) is cog.AsyncConcatenateIterator)",
    ),
    (
        "ConcatenateIterator: a generator is not one",
        "def gen():\n    yield 'x'\nisinstance(gen(), cog.ConcatenateIterator)",
    ),
    # BaseModel
    (
        "BaseModel: fields become a dataclass",
        "class Out(cog.BaseModel):\n"
        "    text: str\n"
        "    score: float = 0.5\n"
        "o = Out(text='t')\n"
        "(dataclasses.is_dataclass(Out), o, o == Out('t', 0.5), "
        "[f.name for f in dataclasses.fields(Out)])",
    ),
    ("BaseModel: the base itself", "(cog.BaseModel(), dataclasses.is_dataclass(cog.BaseModel))"),
    ("BaseModel: takes no fields itself", "cog.BaseModel(x=1)"),
    (
        "BaseModel: dataclass keywords",
        "class Frozen(cog.BaseModel, frozen=True):\n    x: int\nf = Frozen(x=1)\nf.x = 2",
    ),
    (
        "BaseModel: init=False",
        "class NoInit(cog.BaseModel, init=False):\n    x: int = 1\nNoInit()",
    ),
    (
        "BaseModel: auto_dataclass=False",
        "class Manual(cog.BaseModel, auto_dataclass=False):\n    x: int\n"
        "(dataclasses.is_dataclass(Manual), Manual())",
    ),
    (
        "BaseModel: an automatic child of a manual one",
        "class Manual(cog.BaseModel, auto_dataclass=False):\n    x: int = 1\n"
        "class Child(Manual):\n    y: int = 2\n"
        "Child()",
    ),
    (
        "BaseModel: a manual child of an automatic one",
        "class Auto(cog.BaseModel):\n    x: int\n"
        "class Child(Auto, auto_dataclass=False):\n    pass",
    ),
    (
        "BaseModel: not the primary base",
        "class Other:\n    pass\nclass Wrong(Other, cog.BaseModel):\n    x: int",
    ),
    (
        "BaseModel: a dataclass mixin",
        "@dataclasses.dataclass\nclass Mixin:\n    m: int = 0\n"
        "class Mixed(cog.BaseModel, Mixin):\n    x: int = 1",
    ),
    (
        "BaseModel: inherited fields",
        "class A(cog.BaseModel):\n    a: int\nclass B(A):\n    b: str = 'b'\nB(a=1)",
    ),
    (
        "BaseModel: an unknown class keyword",
        "class Odd(cog.BaseModel, sideways=True):\n    x: int",
    ),
    # BaseRunner, BasePredictor
    ("BaseRunner.run: not defined", "cog.BaseRunner().run()"),
    ("BasePredictor.predict: not defined", "caught(lambda: cog.BasePredictor().predict())"),
    ("BaseRunner.predict: warns and runs run()", "caught(lambda: Runner().predict(prompt='x'))"),
    ("BaseRunner.run: runs a legacy predict()", "caught(lambda: Legacy().run(prompt='y'))"),
    ("BaseRunner.setup: does nothing", "(cog.BaseRunner().setup(), cog.BaseRunner().setup('w'))"),
    (
        "BaseRunner.record_metric: nothing outside a prediction",
        "r = Runner()\n(r.record_metric('x', 1), r.record_metric('predict_time', object()))",
    ),
    ("BaseRunner.record_metric: a bad mode", "Runner().record_metric('x', 1, 'sideways')"),
    ("BaseRunner.scope: outside a prediction", "repr(Runner().scope)"),
    (
        "has_setup_weights / extract_setup_weights",
        "[(cog.predictor.has_setup_weights(r), cog.predictor.extract_setup_weights(r)) "
        "for r in (Runner(), Plain(), Legacy())]",
    ),
    # current_scope, metrics
    (
        "current_scope: outside a prediction",
        "s = cog.current_scope()\n"
        "(repr(s), repr(s.metrics), s.context, type(s.context).__name__, "
        "s.record_metric('predict_time', 1), s.record_metric('x', object(), 'incr'))",
    ),
    (
        "current_scope: metrics outside a prediction",
        "m = cog.current_scope().metrics\n"
        "m['a'] = 1\n"
        "del m['a']\n"
        "(m.record('cog.x', 1), m.record('b', 1, mode='incr'), m.delete('nothing'), repr(m))",
    ),
    # the retired names
    (
        "ExperimentalFeatureWarning: still filters",
        "w = cog.ExperimentalFeatureWarning\n"
        "warnings.filterwarnings('ignore', category=w)\n"
        "(w.__name__, issubclass(w, FutureWarning), w is cog.ExperimentalFeatureWarning)",
    ),
    (
        "emit_metric: records nothing outside a prediction",
        "e = cog.emit_metric\n(e.__name__, e('tokens', 3), e is cog.emit_metric)",
    ),
    ("an unknown name", "cog.NoSuchThing"),
    (
        "from cog import *",
        "ns = {}\nexec('from cog import *', ns)\nsorted(k for k in ns if k != '__builtins__')",
    ),
    # decorators
    (
        "streaming: returns the function",
        "(cog.streaming(fn) is fn, cog.streaming()(afn) is afn)",
    ),
    (
        "concurrent: marks the function",
        "f = cog.concurrent(max=3)(afn)\n"
        "(f is afn, f.__cog_concurrent_max__, cog.concurrent(fn).__cog_concurrent_max__)",
    ),
    ("concurrent: max > 1 needs async", "cog.concurrent(max=2)(fn)"),
    ("concurrent: an async generator", "cog.concurrent(max=2)(agen).__cog_concurrent_max__"),
    ("concurrent: not a function", "cog.concurrent(5)"),
    # Input
    ("Input: choices kept as given", "cog.Input(choices=('a', 'b')).choices"),
    ("Input: a frozen FieldInfo", "f = cog.Input(default=1)\nf.default = 2"),
    ("Input: is a FieldInfo", "isinstance(cog.Input(), cog.FieldInfo)"),
    # the other modules
    ("Mode", "[(m.name, m.value, str(m)) for m in cog.mode.Mode] + [cog.mode.Mode('train')]"),
    ("Mode: unknown", "cog.mode.Mode('serve')"),
    (
        "errors",
        "e = cog.errors\n"
        "(issubclass(e.ConfigDoesNotExist, e.CogError), issubclass(e.PredictorNotSet, e.CogError), "
        "issubclass(e.CogError, Exception), str(e.PredictorNotSet('p')))",
    ),
    (
        "Coder: register and look up",
        "cog.coder.Coder.register(JsonCoder)\n"
        "c = cog.coder.Coder.lookup(complex)\n"
        "(type(c).__name__, c.encode(1 + 2j), c.decode({'re': 3, 'im': 4}), "
        "cog.coder.Coder.lookup(str), JsonCoder in cog.coder.Coder._coders)",
    ),
    (
        "suppress_output: silences file descriptors 1 and 2",
        "r, w = os.pipe()\n"
        "saved = os.dup(1)\n"
        "os.dup2(w, 1)\n"
        "streams = sys.stdout, sys.stderr\n"
        "sys.stdout = sys.stderr = open(1, 'w', closefd=False)\n"
        "try:\n"
        "    with cog.suppress_output.suppress_output():\n"
        "        os.write(1, b'hidden')\n"
        "    os.write(1, b'shown')\n"
        "finally:\n"
        "    sys.stdout, sys.stderr = streams\n"
        "    os.dup2(saved, 1)\n"
        "    os.close(saved)\n"
        "    os.close(w)\n"
        "os.read(r, 100)",
    ),
    (
        "CancelationException",
        "(issubclass(cog.CancelationException, Exception), cog.CancelationException('c').args)",
    ),
]


def all_cases(surface: dict[str, Any]) -> list[dict[str, str]]:
    found = calls(surface) + loading() + [(name, _code(code)) for name, code in SCENARIOS]
    return [{"id": name, "code": code} for name, code in found]


def prelude(surface: dict[str, Any]) -> str:
    imports = "\n".join(f"import {module}" for module in sorted(surface))
    return PRELUDE.format(imports=imports)

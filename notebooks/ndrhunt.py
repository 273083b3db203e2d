"""Run ndr's hunting library against ClickHouse from a notebook.

The library is notebooks/queries/*.sql: one query per file, with a header
that says what it finds and declares its typed parameters. This module reads
those headers the way `ndr hunt` does (internal/hunt), fills in defaults, and
sends every value as a ClickHouse query parameter (`param_<name>` on the HTTP
interface), so no value is ever formatted into SQL text.

Configuration, from the environment:

    NDR_CLICKHOUSE_URL       HTTP interface (default http://127.0.0.1:18123, `make demo`'s)
    NDR_CLICKHOUSE_DATABASE  database (default ndr)
    NDR_CLICKHOUSE_USER, NDR_CLICKHOUSE_PASSWORD   credentials, if the server wants them

Typical use:

    import ndrhunt as nh
    nh.describe("beacon-candidates")
    cands = nh.run("beacon-candidates", min_conns=20)
    nh.sql("SELECT count() FROM conn WHERE orig_h = {h:IPv6}", h="10.0.0.23")
"""

import dataclasses
import datetime as _dt
import os
import pathlib

import pandas as pd
import requests

URL = os.environ.get("NDR_CLICKHOUSE_URL", "http://127.0.0.1:18123").rstrip("/")
DATABASE = os.environ.get("NDR_CLICKHOUSE_DATABASE", "ndr")
QUERIES = pathlib.Path(__file__).resolve().with_name("queries")
TIMEOUT = float(os.environ.get("NDR_CLICKHOUSE_TIMEOUT", "300"))


@dataclasses.dataclass
class Param:
    name: str
    type: str
    default: str  # the ClickHouse literal the header gives; "" when required
    required: bool
    meaning: str


@dataclasses.dataclass
class Query:
    name: str
    finds: str
    params: list
    sql: str

    def param(self, name):
        for p in self.params:
            if p.name == name:
                return p
        return None


def _scan(s, stop):
    """Return the prefix of s up to the first stop character outside
    brackets and quotes (as internal/hunt's scanBalanced does)."""
    depth, i = 0, 0
    while i < len(s):
        c = s[i]
        if c in "'\"`":
            j = i + 1
            while j < len(s) and s[j] != c:
                j += 2 if s[j] == "\\" else 1
            i = j
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0 and c == stop:
            return s[:i]
        i += 1
    return s


def _parse_param(line):
    name, rest = line.split(" ", 1)
    rest = rest.lstrip()
    typ = _scan(rest, " ")
    rest = rest[len(typ):].lstrip()
    if rest.startswith("required"):
        default, required = "", True
        rest = rest[len("required"):]
    elif rest.startswith("default "):
        rest = rest[len("default "):].lstrip()
        default, required = _scan(rest, ",").strip(), False
        rest = rest[len(_scan(rest, ",")):]
    else:
        raise ValueError(f"parameter {name}: want 'default VALUE' or 'required'")
    meaning = rest.lstrip().removeprefix(",").strip()
    return Param(name, typ, default, required, meaning)


def parse(path):
    """Read one library file's header."""
    path = pathlib.Path(path)
    text = path.read_text()
    name, finds, params, key = path.stem, [], [], None
    for line in text.splitlines():
        if not line.startswith("--") or not line[2:].strip():
            break
        rest = line[2:].rstrip()
        if rest.startswith(" ") and not rest.startswith("  "):
            key, _, value = rest[1:].partition(":")
            if key == "finds" and value.strip():
                finds.append(value.strip())
            continue
        if key == "finds":
            finds.append(rest.strip())
        elif key == "params":
            params.append(_parse_param(rest.strip()))
    return Query(name, " ".join(finds), params, text)


def library():
    """Every query of the library, by name."""
    return {p.stem: parse(p) for p in sorted(QUERIES.glob("*.sql"))}


def describe(name=None):
    """Print what a query (or every query) finds and its parameters."""
    for q in library().values():
        if name and q.name != name:
            continue
        print(q.name)
        print("    " + q.finds)
        for p in q.params:
            how = "required" if p.required else "default " + p.default
            print(f"    {p.name} {p.type} ({how}): {p.meaning}")
        print()


def _base(typ):
    t = typ.replace(" ", "")
    for wrapper in ("Nullable(", "LowCardinality("):
        while t.startswith(wrapper):
            t = t[len(wrapper):-1]
    return t.split("(", 1)[0]


def _escape(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _time(v):
    t = pd.Timestamp(v)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def value(v, typ):
    """A Python value as the text ClickHouse parses a parameter of typ from."""
    base = _base(typ)
    if v is None:
        return "\\N"
    if isinstance(v, str) and v.upper() == "NULL" and typ.replace(" ", "").startswith("Nullable("):
        return "\\N"
    if base in ("DateTime", "DateTime64"):
        return _time(v)
    if base in ("Date", "Date32"):
        return pd.Timestamp(v).strftime("%Y-%m-%d")
    if isinstance(v, bool):
        return ("true" if v else "false") if base == "Bool" else str(int(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join("'" + str(x).replace("\\", "\\\\").replace("'", "\\'") + "'" if isinstance(x, str) else str(x) for x in v) + "]"
    if base in ("String", "FixedString", "Enum8", "Enum16"):
        return _escape(str(v))
    return str(v)


def _default(p):
    lit = p.default
    if lit.upper() == "NULL":
        return "\\N"
    if len(lit) >= 2 and lit[0] == lit[-1] == "'":
        return _escape(lit[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
    return lit


def _post(text, params):
    query = {"database": DATABASE, "default_format": "JSON", "output_format_json_quote_64bit_integers": "0"}
    query.update({"param_" + k: v for k, v in params.items()})
    headers = {}
    if os.environ.get("NDR_CLICKHOUSE_USER"):
        headers["X-ClickHouse-User"] = os.environ["NDR_CLICKHOUSE_USER"]
    if os.environ.get("NDR_CLICKHOUSE_PASSWORD"):
        headers["X-ClickHouse-Key"] = os.environ["NDR_CLICKHOUSE_PASSWORD"]
    r = requests.post(URL + "/", params=query, data=text.encode(), headers=headers, timeout=TIMEOUT)
    if r.status_code != 200:
        raise RuntimeError(f"ClickHouse at {URL} answered {r.status_code}: {r.text.strip()}")
    body = r.json()
    cols = [m["name"] for m in body["meta"]]
    df = pd.DataFrame(body["data"], columns=cols)
    for m in body["meta"]:
        if _base(m["type"]) in ("DateTime", "DateTime64"):
            df[m["name"]] = pd.to_datetime(df[m["name"]], utc=True)
    return df


def run(name, **params):
    """Run a library query; keyword arguments are its parameters (Python
    values: str, int, float, bool, None, datetime or pandas Timestamp,
    lists). Missing ones take the header's default. Returns a DataFrame
    with times as UTC Timestamps."""
    q = library().get(name)
    if q is None:
        raise KeyError(f"no query {name!r} (have {', '.join(library())})")
    unknown = sorted(set(params) - {p.name for p in q.params})
    if unknown:
        raise TypeError(f"{name} has no parameter {', '.join(unknown)} (it takes {', '.join(p.name for p in q.params)})")
    sent = {}
    for p in q.params:
        if p.name in params:
            sent[p.name] = value(params[p.name], p.type)
        elif p.required:
            raise TypeError(f"{name} needs {p.name} ({p.type}): {p.meaning}")
        else:
            sent[p.name] = _default(p)
    return _post(q.sql, sent)


def sql(text, **params):
    """Run ad-hoc SQL whose values are {name:Type} placeholders, given as
    keyword arguments (typed from the placeholder), never formatted in."""
    import re

    types = dict(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+)\}", text))
    missing = sorted(set(types) - set(params))
    if missing:
        raise TypeError(f"no value for {', '.join(missing)}")
    return _post(text, {k: value(v, types[k]) for k, v in params.items() if k in types})


def ping():
    """Fail early, with a hint, when ClickHouse is not there."""
    try:
        requests.get(URL + "/ping", timeout=5).raise_for_status()
    except requests.RequestException as e:
        raise RuntimeError(f"no ClickHouse at {URL} ({e}): run `make demo`, or set NDR_CLICKHOUSE_URL") from None
    return URL

"""Tests for gradbench.axes.specs: the ``name[key=value,...]`` syntax."""

from __future__ import annotations

import math
import re

import pytest
import torch

from gradbench.axes.specs import format_spec, format_value, parse_spec, parse_value, split_top_level

torch.set_num_threads(1)


# --------------------------------------------------------------------------- parse_spec


@pytest.mark.parametrize(
    "text, expected",
    [
        ("adam", ("adam", {})),
        ("adam[]", ("adam", {})),
        ("  adam  ", ("adam", {})),
        ("adam[lr=1e-3]", ("adam", {"lr": 0.001})),
        ("adam[lr=1e-3,betas=(0.9,0.99)]", ("adam", {"lr": 0.001, "betas": (0.9, 0.99)})),
        ("adam[ lr = 1e-3 , betas = ( 0.9 , 0.99 ) ]", ("adam", {"lr": 0.001, "betas": (0.9, 0.99)})),
        ("adam[betas=[0.9,0.99]]", ("adam", {"betas": (0.9, 0.99)})),  # lists become tuples
        ("nesterov[nesterov=true,momentum=0.5]", ("nesterov", {"nesterov": True, "momentum": 0.5})),
        ("sgd[nesterov=False]", ("sgd", {"nesterov": False})),
        ("kaiming_normal[mode=fan_out,gain=none]", ("kaiming_normal", {"mode": "fan_out", "gain": None})),
        ("x2[a=-3,b='quoted']", ("x2", {"a": -3, "b": "quoted"})),
        ("mnist1d_mlp[depth=30,width=64]", ("mnist1d_mlp", {"depth": 30, "width": 64})),
        ("t[nested=((1,2),(3,))]", ("t", {"nested": ((1, 2), (3,))})),
        ("t[nested=[[1,2],[3]]]", ("t", {"nested": ((1, 2), (3,))})),  # lists are read as tuples, inner ones too
        ("t[modes=(fan_in,true,none,-inf)]", ("t", {"modes": ("fan_in", True, None, float("-inf"))})),  # words inside tuples too
    ],
)
def test_parse_spec(text, expected):
    name, params = parse_spec(text)
    assert (name, params) == expected
    # Types too: 1e-3 is a float, 30 an int, true a bool.
    for key, value in expected[1].items():
        assert type(params[key]) is type(value), key


def test_parse_spec_example_from_docs():
    assert parse_spec("adam[lr=1e-3,betas=(0.9,0.99)]") == ("adam", {"lr": 0.001, "betas": (0.9, 0.99)})


def test_parse_spec_quoted_string_with_comma():
    assert parse_spec("t[b='x,y',c=1]") == ("t", {"b": "x,y", "c": 1})


# Error table: (input, regex the message must match: it names the bad part).
SPEC_ERRORS = [
    ("adam[lr=abc", r"malformed spec 'adam\[lr=abc'"),
    ("adam[lr]", r"malformed parameter 'lr'"),
    ("adam[lr=1,lr=2]", r"parameter 'lr' given twice"),
    ("Adam", r"malformed name 'Adam'"),
    ("adam[lr=1e-3x]", r"malformed value '1e-3x' for 'lr'"),
    ("adam[lr=1e-3,betas=(0.9]", r"unclosed bracket in 'lr=1e-3,betas=\(0.9'"),
    ("adam[lr=0.9)]", r"unbalanced '\)' in 'lr=0.9\)'"),
    ("adam[=1]", r"malformed parameter '=1'"),
    ("adam[lr=1,]", r"malformed parameter ''"),
    ("adam[Lr=1]", r"malformed parameter 'Lr=1'"),
    ("adam[lr=1]x", r"malformed spec 'adam\[lr=1\]x'"),
    ("1adam", r"malformed name '1adam'"),
    ("ad am", r"malformed name 'ad am'"),
    ("ad-am[lr=1]", r"malformed name 'ad-am'"),
    ("[lr=1]", r"malformed name ''"),
    ("", r"malformed name ''"),
    ("adam[lr=(0.9 0.99)]", r"malformed value '\(0.9 0.99\)' for 'lr'"),
    ("adam[lr=1 2]", r"malformed value '1 2' for 'lr'"),
    # Literals a cell's key (JSON) or hash cannot hold, each one line naming what to give.
    ("t[d={'a':1,'b':2}]", r"unsupported value \"\{'a':1,'b':2\}\" for 'd' in .*: give a number, a string, true/false, none, or a tuple of them$"),
    ("sgd[maximize=b'x']", r"unsupported value \"b'x'\" for 'maximize'"),
    ("sgd[dampening=set()]", r"malformed value 'set\(\)' for 'dampening'"),
    ("sgd[maximize=1j]", r"unsupported value '1j' for 'maximize'"),
    ("t[x=(1,{2})]", r"unsupported value '\(1,\{2\}\)' for 'x'"),
    # Literals Python's own parser fails on other than with ValueError.
    ("adam[lr={[1]:2}]", r"malformed value '\{\[1\]:2\}' for 'lr'"),
    ("linreg[dim={{}}]", r"malformed value '\{\{\}\}' for 'dim'"),
    ("t[x=" + "-" * 100_000 + "1]", r"value '-{40}'\.\.\. \(100001 characters\) is too long for 'x' in .*\(100006 characters\): at most 1000 characters$"),
    ("t[x=" + "(" * 400 + ")" * 400 + "]", r"malformed value"),
    ("a" * 101, r"malformed name 'a{80}'\.\.\. \(101 characters\)"),
]


@pytest.mark.parametrize("text, pattern", SPEC_ERRORS, ids=[(t[:40] + ("..." if len(t) > 40 else "")) or "<empty>" for t, _ in SPEC_ERRORS])
def test_parse_spec_errors(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_spec(text)


def test_parse_spec_error_messages_contain_whole_spec_when_inside_brackets():
    for text in ["adam[lr]", "adam[lr=1,lr=2]", "adam[lr=1e-3x]"]:
        with pytest.raises(ValueError) as info:
            parse_spec(text)
        assert repr(text) in str(info.value)


# --------------------------------------------------------------------------- format_spec


@pytest.mark.parametrize(
    "name, params, expected",
    [
        ("adam", None, "adam"),
        ("adam", {}, "adam"),
        ("adam", {"lr": 0.001}, "adam[lr=0.001]"),
        ("adam", {"lr": 0.001, "betas": (0.9, 0.99)}, "adam[betas=(0.9,0.99),lr=0.001]"),  # sorted keys
        ("sgd", {"nesterov": True, "momentum": 0.9}, "sgd[momentum=0.9,nesterov=true]"),
        ("t", {"one": (1,)}, "t[one=(1,)]"),
        ("t", {"empty": ()}, "t[empty=()]"),
        ("t", {"mode": "fan_in", "gain": None}, "t[gain=None,mode=fan_in]"),
        ("t", {"depth": 30}, "t[depth=30]"),
    ],
)
def test_format_spec(name, params, expected):
    assert format_spec(name, params) == expected


ROUND_TRIP_SPECS = [
    "adam",
    "adam[lr=1e-3,betas=(0.9,0.99)]",
    "adamw[weight_decay=0.1,eps=1e-08,lr=3e-4]",
    "nesterov[momentum=0.95,nesterov=true]",
    "kaiming_normal[mode=fan_out,gain=2.5]",
    "kaiming_normal[gain=none]",
    "t[x=(1,),y=(),z=((1,2),(3.5,-4))]",
    "mnist1d_mlp[depth=30,width=128,target=0.5]",
    "t[big=1e+300,small=-1.5e-300,neg=-0.0]",
]


@pytest.mark.parametrize("text", ROUND_TRIP_SPECS)
def test_round_trip_parse_format_parse(text):
    name, params = parse_spec(text)
    canonical = format_spec(name, params)
    assert parse_spec(canonical) == (name, params)
    # Canonical text is a fixed point.
    assert format_spec(*parse_spec(canonical)) == canonical


@pytest.mark.parametrize(
    "canonical",
    ["adam", "adam[betas=(0.9,0.99),lr=0.001]", "sgd[lr=0.1,nesterov=false]", "t[a=(1,),b=fan_in,c=None]"],
)
def test_canonical_text_is_reproduced_exactly(canonical):
    assert format_spec(*parse_spec(canonical)) == canonical


def test_round_trip_property_over_random_floats():
    generator = torch.Generator().manual_seed(0)
    exponents = torch.randint(-30, 30, (200,), generator=generator)
    mantissas = torch.randn(200, generator=generator, dtype=torch.float64)
    for mantissa, exponent in zip(mantissas.tolist(), exponents.tolist()):
        value = mantissa * 10.0**exponent
        params = {"lr": value, "betas": (value, -value), "n": int(exponent)}
        assert parse_spec(format_spec("opt", params)) == ("opt", params)


# --------------------------------------------------------------------------- format_value / parse_value


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1e-3", 0.001),
        ("0.5", 0.5),
        ("-2", -2),
        ("30", 30),
        ("(0.9,0.99)", (0.9, 0.99)),
        ("(0.9, 0.99)", (0.9, 0.99)),
        ("[1, 2]", (1, 2)),
        ("(1,)", (1,)),
        ("()", ()),
        ("true", True),
        ("True", True),
        ("FALSE", False),
        ("none", None),
        ("None", None),
        ("null", None),
        ("fan_in", "fan_in"),
        ("batch-norm", "batch-norm"),
        ("'quoted'", "quoted"),
        ("  7  ", 7),
    ],
)
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text", ["1e-3x", "(0.9", "0.9)", "1 2", "a b", "1.2.3", "@", "", "-x"])
def test_parse_value_malformed(text):
    with pytest.raises(ValueError, match=re.escape(f"malformed value {text.strip()!r}")):
        parse_value(text)


@pytest.mark.parametrize(
    "value",
    [0.001, 1e-8, 3e-4, 0.1 + 0.2, -1.5, 0, 7, True, False, None, (0.9, 0.999), (1,), (), "fan_in", ((1, 2), (3,)), 1e300],
)
def test_format_value_round_trip(value):
    assert parse_value(format_value(value)) == value
    assert type(parse_value(format_value(value))) is type(value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, "1", "true", "none", "a b"])
def test_format_value_round_trip_edge_cases(value):
    assert parse_value(format_value(value)) == value


# --------------------------------------------------------------------------- split_top_level


@pytest.mark.parametrize(
    "text, separator, expected",
    [
        ("a=1,b=2", ",", ["a=1", "b=2"]),
        ("a=1, b=(1,2), c=[3,4], d={5:6,7:8}", ",", ["a=1", "b=(1,2)", "c=[3,4]", "d={5:6,7:8}"]),
        ("a=((1,2),(3,4)),b=5", ",", ["a=((1,2),(3,4))", "b=5"]),
        ("", ",", [""]),
        ("single", ",", ["single"]),
        ("a,,b", ",", ["a", "", "b"]),
        ("a,", ",", ["a", ""]),
        ("x;y(1;2);z", ";", ["x", "y(1;2)", "z"]),
        ("a,b", ";", ["a,b"]),
    ],
)
def test_split_top_level(text, separator, expected):
    assert split_top_level(text, separator) == expected


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("a=(1,2", r"unclosed bracket in 'a=\(1,2': '\)' is missing"),
        ("a=[1,(2]", r"unbalanced '\]'"),
        ("a=1)", r"unbalanced '\)' in 'a=1\)'"),
        ("}", r"unbalanced '\}'"),
        ("a=[{]}", r"unbalanced '\]'"),
    ],
)
def test_split_top_level_unbalanced(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        split_top_level(text)


def test_split_top_level_property_join_restores_text():
    # Splitting then joining with the separator gives back the text (modulo whitespace around parts).
    texts = ["a=1,b=(2,3),c=[4,(5,6)]", "x", "p=(1,2),q={3:(4,5)}", "a,b,c,d"]
    for text in texts:
        parts = split_top_level(text)
        assert ",".join(parts) == text
        for part in parts:
            # Each part is balanced on its own.
            assert split_top_level(part, ";") == [part]

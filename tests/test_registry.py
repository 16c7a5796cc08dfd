"""The registry type and the registries built on it (spaces, strategies, executors, proxies).

The bug of issue 16: ``get_space``/``get_strategy`` caught every ``TypeError`` around the
constructor call, so a bug inside a constructor was reported as "bad settings" and its
traceback dropped. Settings are now checked against the signature before the call.
"""

from __future__ import annotations

import traceback

import pytest

from nasforge.config import EXECUTORS as CONFIG_EXECUTORS
from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.registry import Registry
from nasforge.spaces import base as spaces_base
from nasforge.spaces import get_space
from nasforge.strategies import Problem, get_strategy
from nasforge.strategies import base as strategies_base
from nasforge.strategies.random_search import RandomSearch


def test_register_get_names_and_unknown_name() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    def make_b(size: int = 1) -> str:
        return f"b{size}"

    reg.register("a", lambda: "a")
    assert make_b(2) == "b2"  # the decorator returns the function unchanged
    assert reg.names() == ["a", "b"] and "a" in reg and "c" not in reg and len(reg) == 2
    assert reg.get("b") is make_b
    with pytest.raises(ConfigError, match=r"^unknown widget 'c'; known: a, b$"):
        reg.get("c")
    ordered: Registry[int] = Registry("thing", sort_names=False)
    ordered.register("z", 1)
    ordered.register("y", 2)
    assert ordered.names() == ["z", "y"] and list(ordered) == ["z", "y"]
    with pytest.raises(ConfigError, match="known: z, y"):
        ordered.get("x")
    with pytest.raises(ConfigError, match="non-empty name"):
        reg.register("")


def test_make_checks_settings_against_the_signature() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("w")
    class Widget:
        def __init__(self, space: object, size: int = 1, *, colour: str = "red") -> None:
            self.space, self.size, self.colour = space, size, colour

    made = reg.make("w", "S", size=3, colour="blue")
    assert (made.space, made.size, made.colour) == ("S", 3, "blue")
    with pytest.raises(ConfigError, match=r"bad settings for widget 'w': unknown setting "
                                          r"'sise'; known: size, colour"):
        reg.make("w", "S", sise=3)
    # a positional argument the caller supplies is not a setting the user may pass
    with pytest.raises(ConfigError, match="unknown setting 'space'"):
        reg.make("w", "S", space="T")
    with pytest.raises(ConfigError, match="bad settings for widget 'w'.*space"):
        reg.make("w")  # the required argument is missing


def test_a_type_error_inside_a_factory_propagates_with_its_traceback() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("buggy")
    def buggy(size: int = 1) -> int:
        return size + "1"  # type: ignore[operator]  # a bug: TypeError inside the factory

    with pytest.raises(TypeError) as info:
        reg.make("buggy", size=2)
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "buggy"  # the traceback reaches the line of the bug


class _BrokenSpace(spaces_base.SearchSpace):
    """A space whose constructor has a bug (a TypeError raised inside it)."""

    name = "broken"

    def __init__(self, depth: int = 2) -> None:
        self.depth = len(depth)  # type: ignore[arg-type]  # TypeError: int has no len()

    # the abstract methods are never reached
    sample = validate = canonical = build = count_params = None  # type: ignore[assignment]
    genome_to_dict = genome_from_dict = describe = None  # type: ignore[assignment]


def test_get_space_lets_a_constructor_type_error_through(monkeypatch) -> None:
    spaces = Registry("space")
    spaces.register("broken", _BrokenSpace)
    monkeypatch.setattr(spaces_base, "SPACES", spaces)
    with pytest.raises(TypeError, match="has no len"):  # was ConfigError "bad settings"
        get_space("broken", depth=3)
    with pytest.raises(ConfigError, match="bad settings for space 'broken': unknown setting "
                                          "'dept'; known: depth"):
        get_space("broken", dept=3)


def test_get_space_names_an_unknown_setting_of_a_real_space() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'max_node'; known: .*max_nodes"):
        get_space("global", max_node=6)
    with pytest.raises(ConfigError, match="unknown space 'nope'; known: darts, global, nb201"):
        get_space("nope")
    with pytest.raises(ConfigError, match="max_nodes must be a positive int"):
        get_space("global", max_nodes=0)  # the constructor's own ConfigError is kept


class _BrokenStrategy(RandomSearch):
    def __init__(self, space, budget, problem, seed, rate: float = 0.1) -> None:
        super().__init__(space, budget, problem, seed)
        self.rate = rate * "x"  # type: ignore[operator]  # TypeError: float * str


def test_get_strategy_lets_a_constructor_type_error_through(monkeypatch) -> None:
    strategies = Registry("strategy")
    strategies.register("broken", _BrokenStrategy)
    monkeypatch.setattr(strategies_base, "STRATEGIES", strategies)
    space = get_space("nb201", cells=1)
    args = (space, Budget(width=4), Problem((1, 8, 8), 3), 0)
    with pytest.raises(TypeError, match="can't multiply"):  # was ConfigError "bad settings"
        get_strategy("broken", *args, rate=0.5)
    with pytest.raises(ConfigError, match="bad settings for strategy 'broken': unknown "
                                          "setting 'rat'; known: rate"):
        get_strategy("broken", *args, rat=0.5)


def test_get_strategy_names_an_unknown_setting_of_a_real_strategy() -> None:
    space = get_space("nb201", cells=1)
    args = (space, Budget(width=4), Problem((1, 8, 8), 3), 0)
    with pytest.raises(ConfigError, match="strategy 'evolution': unknown setting 'pop'; "
                                          "known: population, sample, novelty_tries"):
        get_strategy("evolution", *args, pop=4)
    with pytest.raises(ConfigError, match="unknown strategy 'nope'; known: .*evolution"):
        get_strategy("nope", *args)
    strategy = get_strategy("evolution", *args, population=4, sample=2)
    assert strategy.population_size == 4 and strategy.space is space
    assert strategy.ask().genome == get_strategy("evolution", *args, population=4,
                                                 sample=2).ask().genome


def test_executor_registry_matches_the_config_names() -> None:
    from nasforge.execution.executors import EXECUTORS

    assert EXECUTORS.names() == list(CONFIG_EXECUTORS) == ["local", "mpi", "dask"]


def test_proxy_registry_is_what_compute_proxy_and_prefilter_know() -> None:
    from nasforge.evaluation.proxies import PROXIES, available_proxies
    from nasforge.strategies.prefilter import parse_prefilter

    assert available_proxies() == PROXIES.names()
    assert available_proxies()[-2:] == ["params", "flops"]  # baselines last
    for name in available_proxies():
        assert parse_prefilter(f"{name}:4").proxy == name
    with pytest.raises(ConfigError, match="unknown proxy 'nope'; known: synflow, snip"):
        parse_prefilter("nope:4")


def test_cli_shows_the_constructor_bug_as_an_internal_error(monkeypatch, capsys) -> None:
    from nasforge.cli import main

    spaces = Registry("space")
    spaces.register("broken", _BrokenSpace)
    monkeypatch.setattr(spaces_base, "SPACES", spaces)
    assert main(["space", "sample", "--space", "broken"]) != 0
    err = capsys.readouterr().err
    assert "internal error: TypeError: object of type 'int' has no len()" in err
    assert "bad settings" not in err and "Traceback" not in err
    assert main(["--debug", "space", "sample", "--space", "broken"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" in err and "in __init__" in err and "len(depth)" in err

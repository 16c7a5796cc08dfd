"""A genetic algorithm with crossover (``genetic``), NEAT-style on the global space.

Population, tournament selection, crossover of two parents plus mutation, elitism; steady
state by default (each result joins and the worst member leaves, so workers never wait),
generational as an option. Crossover is NEAT's on the global space (genes aligned by their
content-derived ids, which play the role of NEAT's innovation numbers) and uniform over the
decision sequence on the cell spaces (see :func:`nasforge.strategies.population.crossover`).

Optional speciation (NEAT, Stanley & Miikkulainen 2002, Sec. 3.3): compatibility
``delta = c1 E / N + c2 D / N + c3 W`` with E, D the excess and disjoint genes, W the fraction
of matching nodes whose operation differs (our genomes have no weights) and N the gene count
of the larger genome, 1 below 20 genes (as in the paper). Our ids are hashes with no order,
so excess and disjoint genes cannot be told apart: every unmatched gene counts as disjoint
(the same delta under NEAT's c1 = c2). On a decisions space W is the fraction of differing
steps and there are no unmatched genes, so the default threshold makes one species there.
Fitness sharing divides a member's fitness by its species' size; a species whose best has not
improved for ``stagnation`` generations (a generation being ``population`` births) does not
breed, unless it holds the best member.
"""

from __future__ import annotations

import math
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluation.budget import Budget
from nasforge.spaces.base import SearchSpace, genome_key
from nasforge.spaces.global_dag import GlobalGenome
from nasforge.strategies.base import Candidate, Observation, Problem, Strategy, register_strategy
from nasforge.strategies.decisions import to_decisions
from nasforge.strategies.population import (
    NEAT_DISABLED_STAYS, Proposals, check_crossover, check_float, check_int, crossover,
    population_ask,
)

MODES: tuple[str, ...] = ("steady", "generational")


def compatibility(space: SearchSpace, a: Any, b: Any, c1: float = 1.0, c2: float = 1.0,
                  c3: float = 0.4) -> float:
    """NEAT's compatibility distance between two genomes (see the module doc); 0 for a space
    with neither global genomes nor decisions. Defaults: NEAT's c1, c2, c3."""
    if isinstance(a, GlobalGenome) and isinstance(b, GlobalGenome):
        genes_a = {("n", n.id) for n in a.nodes} | {("e", e.src, e.dst) for e in a.edges}
        genes_b = {("n", n.id) for n in b.nodes} | {("e", e.src, e.dst) for e in b.edges}
        excess, disjoint = 0, len(genes_a ^ genes_b)  # hashed ids: no order, no excess
        ops_a, ops_b = a.ops, b.ops
        shared = [i for i in ops_a if i in ops_b]
        w = sum(ops_a[i] != ops_b[i] for i in shared) / len(shared) if shared else 0.0
        larger = max(len(genes_a), len(genes_b))
        n = larger if larger >= 20 else 1
        return (c1 * excess + c2 * disjoint) / n + c3 * w
    if "decisions" in space.capabilities:
        sa, sb = to_decisions(space, a), to_decisions(space, b)
        return c3 * sum(x != y for x, y in zip(sa, sb)) / max(1, len(sa))
    return 0.0


@register_strategy("genetic")
class GeneticAlgorithm(Strategy):
    """Tournament selection, crossover + mutation, elitism; steady state or generational.

    The first ``population`` asks are random samples (warm-start genomes first). Then each
    ask draws two parents by tournaments of ``sample`` (with replacement), crosses them with
    probability ``crossover_rate`` (else copies the first) and mutates the child with
    probability ``mutation_rate`` (always when it was not crossed). ``mode="steady"``: a told
    result joins the population and the worst leaves (the ``elitism`` best never leave);
    ``"generational"``: results wait until ``population - elitism`` children are in, then
    they and the ``elitism`` best of the old population form the next one. Failed results
    and networks already in the population never join. ``novelty_tries`` as in
    ``evolution``.
    """

    requires = frozenset({"mutate"})

    def __init__(self, space: SearchSpace, budget: Budget, problem: Problem, seed: int,
                 population: int = 20, sample: int = 3, elitism: int = 1,
                 crossover_rate: float = 0.75, mutation_rate: float = 0.5,
                 mode: str = "steady", speciation: bool = False, c1: float = 1.0,
                 c2: float = 1.0, c3: float = 0.4, threshold: float = 3.0,
                 stagnation: int = 15, disabled_stays: float = NEAT_DISABLED_STAYS,
                 novelty_tries: int = 20) -> None:
        super().__init__(space, budget, problem, seed)
        check_crossover(space, self.name)
        name = self.name
        self.population_size = check_int(name, "population", population, 2)
        self.sample_size = check_int(name, "sample", sample, 1)
        if sample > population:
            raise ConfigError(f"{name}: sample ({sample}) must not exceed population "
                              f"({population})")
        self.elitism = check_int(name, "elitism", elitism, 0)
        if elitism >= population:
            raise ConfigError(f"{name}: elitism ({elitism}) must be below population "
                              f"({population})")
        self.crossover_rate = check_float(name, "crossover_rate", crossover_rate, 0.0, 1.0)
        self.mutation_rate = check_float(name, "mutation_rate", mutation_rate, 0.0, 1.0)
        if mode not in MODES:
            raise ConfigError(f"{name}: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.speciation = bool(speciation)
        self.coefficients = tuple(check_float(name, k, v, 0.0)
                                  for k, v in (("c1", c1), ("c2", c2), ("c3", c3)))
        self.threshold = check_float(name, "threshold", threshold, 0.0)
        self.stagnation = check_int(name, "stagnation", stagnation, 1)
        self.disabled_stays = check_float(name, "disabled_stays", disabled_stays, 0.0, 1.0)
        self.proposals = Proposals(space, check_int(name, "novelty_tries", novelty_tries, 0))
        self.members: list[list[Any]] = []  # [genome, fitness, species id, birth, key]
        self.children: list[list[Any]] = []  # generational: results waiting for their turn
        self.species: list[dict[str, Any]] = []  # id, rep, best, improved (generation)
        self.next_species = 0
        self.births = 0
        self.initial_asked = 0
        self._seeds: list[Any] = []

    # ------------------------------------------------------------------ ask
    def ask(self) -> Candidate:
        return population_ask(self)

    def _offspring(self) -> Any:
        pool = self._breeding_pool()
        first = self._tournament(pool)
        if self.rng.random() < self.crossover_rate:
            second = self._tournament(pool)
            if second is first and len(pool) > 1:
                second = self._tournament([m for m in pool if m is not first])
            fitter, other = (first, second) if first[1] >= second[1] else (second, first)
            child = crossover(self, fitter[0], other[0], self.rng, self.disabled_stays)
            if self.rng.random() < self.mutation_rate:
                child = self.mutate_valid(child)
            return child
        return self.mutate_valid(first[0])

    def _tournament(self, pool: list[list[Any]]) -> list[Any]:
        contenders = [self.rng.choice(pool) for _ in range(self.sample_size)]
        return max(contenders, key=lambda m: m[1])

    def _breeding_pool(self) -> list[list[Any]]:
        """All members; with speciation the members of one species, drawn with probability
        proportional to its shared fitness (its mean), stagnant species left out."""
        if not self.speciation:
            return self.members
        generation = self.births // self.population_size
        best = max(self.members, key=lambda m: m[1])
        groups: dict[int, list[list[Any]]] = {}
        for m in self.members:
            groups.setdefault(m[2], []).append(m)
        alive = {s["id"] for s in self.species
                 if generation - s["improved"] < self.stagnation or s["id"] == best[2]}
        ids = sorted(i for i in groups if i in alive) or [best[2]]
        low = min(0.0, min(m[1] for m in self.members))
        weights = [sum(m[1] - low for m in groups[i]) / len(groups[i]) + 1e-12 for i in ids]
        chosen = self.rng.choices(ids, weights=weights)[0]
        return groups[chosen]

    # ------------------------------------------------------------------ tell
    def tell(self, observation: Observation) -> None:
        fitness = observation.fitness
        if observation.status != "ok" or fitness is None or not math.isfinite(fitness):
            return
        genome = observation.genome
        key = genome_key(self.space, genome)
        if any(m[4] == key for m in self.members + self.children):
            return
        self.births += 1
        member = [genome, float(fitness), self._species_of(genome, float(fitness)), self.births,
                  key]
        if self.mode == "generational" and len(self.members) >= self.population_size:
            self.children.append(member)
            if len(self.children) >= self.population_size - self.elitism:
                elite = sorted(self.members, key=lambda m: -m[1])[: self.elitism]
                self.members = elite + self.children
                self.children = []
        else:
            self.members.append(member)
            while len(self.members) > self.population_size:
                self.members.remove(self._worst())
        if self.speciation and self.births % self.population_size == 0:
            self._new_generation()

    def _worst(self) -> list[Any]:
        elite = sorted(self.members, key=lambda m: -m[1])[: self.elitism]
        pool = [m for m in self.members if all(m is not e for e in elite)]
        if not self.speciation:
            return min(pool, key=lambda m: (m[1], -m[3]))
        sizes: dict[int, int] = {}
        for m in self.members:
            sizes[m[2]] = sizes.get(m[2], 0) + 1
        low = min(0.0, min(m[1] for m in self.members))
        return min(pool, key=lambda m: ((m[1] - low) / sizes[m[2]], -m[3]))

    def _species_of(self, genome: Any, fitness: float) -> int:
        """The first species whose representative is within ``threshold`` (a new one else);
        its best fitness and improvement generation are updated."""
        if not self.speciation:
            return 0
        generation = self.births // self.population_size
        for s in self.species:
            if compatibility(self.space, genome, s["rep"], *self.coefficients) < self.threshold:
                break
        else:
            s = {"id": self.next_species, "rep": genome, "best": -math.inf,
                 "improved": generation}
            self.next_species += 1
            self.species.append(s)
        if fitness > s["best"]:
            s["best"], s["improved"] = fitness, generation
        return int(s["id"])

    def _new_generation(self) -> None:
        """Each species' representative becomes a random current member; empty ones go."""
        groups: dict[int, list[Any]] = {}
        for m in self.members + self.children:
            groups.setdefault(m[2], []).append(m[0])
        kept = []
        for s in self.species:
            if s["id"] in groups:
                s["rep"] = self.rng.choice(groups[s["id"]])
                kept.append(s)
        self.species = kept

    # ------------------------------------------------------------------ warm start, state
    def warm_start(self, genomes: list[Any]) -> None:
        self._seeds.extend(g for g in genomes if self.is_valid(g))

    def state_dict(self) -> dict[str, Any]:
        to = self.space.genome_to_dict
        state = super().state_dict()
        state.update(
            members=[[to(m[0]), *m[1:]] for m in self.members],
            children=[[to(m[0]), *m[1:]] for m in self.children],
            species=[{**s, "rep": to(s["rep"]),
                      "best": None if s["best"] == -math.inf else s["best"]}
                     for s in self.species],
            next_species=self.next_species, births=self.births,
            initial_asked=self.initial_asked, seeds=[to(g) for g in self._seeds],
            proposed=sorted(self.proposals.keys),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        frm = self.space.genome_from_dict
        self.members = [[frm(m[0]), float(m[1]), int(m[2]), int(m[3]), str(m[4])]
                        for m in state["members"]]
        self.children = [[frm(m[0]), float(m[1]), int(m[2]), int(m[3]), str(m[4])]
                         for m in state["children"]]
        self.species = [{**s, "rep": frm(s["rep"]),
                         "best": -math.inf if s["best"] is None else float(s["best"])}
                        for s in state["species"]]
        self.next_species = int(state["next_species"])
        self.births = int(state["births"])
        self.initial_asked = int(state["initial_asked"])
        self._seeds = [frm(g) for g in state["seeds"]]
        self.proposals.keys = set(state["proposed"])

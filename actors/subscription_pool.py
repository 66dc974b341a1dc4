"""A node's subscription actors: sessions spread over N independent ones.

Theory of operation. `open_node(..., subscription_actors=N)` makes one
`SubscriptionPool` as `node.subscriptions`, holding N `SubscriptionActor`s
(actors/subscriptions.py); N is 1 unless asked for. The actors share
nothing:

1. Each has its own registry, views and interval indexes, and its own task
   in the node's nursery (open_node starts `pool.actors[i].run` for each).
2. Each is fed every published group: a SubscriptionActor appends its own
   hook to the sequencer's `on_publish` when it is made, so every actor
   stabs its own indexes with every group and brings its own subscriptions
   to the group's last ts.
3. A session lives on one actor for its whole life: `open_session` gives
   it to the actor holding the fewest sessions; ties go round, to the
   first tied actor at or after the one following the last chosen (so
   short-lived sessions opened one after another do not all land on the
   first actor). The rule reads only counts and indexes, never `hash()` or
   randomness, so the simulator's runs stay deterministic.

Every promise of docs/internals.md "Subscriptions" is a promise of one
session, which one actor keeps whole; nothing is promised across sessions
(two sessions already reach a ts at different moments). What the split
costs: identical subscriptions are shared only within an actor, so a query
watched by sessions on two actors is evaluated by both. All actors run on
the node's one trio thread, so N > 1 buys no CPU parallelism: it splits each
group's work into independent tasks (a session waits for its own actor's
re-evaluations only), and it is the shape a split across processes would
take.
"""

from __future__ import annotations

import dataclasses

from actors.subscriptions import SessionQueries, SubscriptionActor, SubscriptionStatistics

__all__ = ["SubscriptionPool", "check_actor_count", "subscription_actors_max"]

# Subscription actors a node may run. Every actor handles every published
# group (a stab of its own indexes at least), so the cost of a commit grows
# with the count, and on one trio thread more actors add no CPU; 64 is far
# past any useful count and only stops a typo from starting thousands.
subscription_actors_max = 64


def check_actor_count(count: int) -> None:
    """Raises ValueError unless `count` is between 1 and subscription_actors_max."""
    if not 1 <= count <= subscription_actors_max:
        raise ValueError(f"a node runs 1 to {subscription_actors_max} subscription actors, "
                         f"not {count}")


class SubscriptionPool:
    """The SubscriptionActor API the node and the wire use, over N actors.

    Fields:
        actors: the SubscriptionActors, made in `__init__` and fixed for the
            node's life.
        _next_index: where `open_session`'s tie-break starts: the index
            after the actor it chose last (0 before the first session).
    """

    def __init__(self, node, actor_count: int = 1) -> None:
        """Makes `actor_count` actors; each registers its own publish hook.

        Raises:
            ValueError: `actor_count` is not between 1 and subscription_actors_max.
        """
        check_actor_count(actor_count)
        self.node = node
        self.actors = [SubscriptionActor(node) for _ in range(actor_count)]
        self._next_index = 0

    # ----- the API ---------------------------------------------------------

    def open_session(self, admin: bool = False) -> SessionQueries:
        """A new, empty session on the actor holding the fewest sessions
        (among equals, the first at or after `_next_index`); `admin` lets
        its queries be internal functions."""
        actors = self.actors
        count, start = len(actors), self._next_index
        chosen = min(range(count), key=lambda index: (actors[index].held_session_count,
                                                      (index - start) % count))
        self._next_index = (chosen + 1) % count
        return actors[chosen].open_session(admin)

    def rerun_all(self) -> None:
        """Re-runs every subscription of every actor (the app's code changed)."""
        for actor in self.actors:
            actor.rerun_all()

    def statistics(self) -> SubscriptionStatistics:
        """Every actor's counts added up; `current_ts` is the lowest actor's
        (every session is current at least there)."""
        each = [actor.statistics() for actor in self.actors]
        if len(each) == 1:
            return each[0]
        totals = {field.name: sum(getattr(statistics, field.name) for statistics in each)
                  for field in dataclasses.fields(SubscriptionStatistics)}
        totals["current_ts"] = min(statistics.current_ts for statistics in each)
        return SubscriptionStatistics(**totals)

    def validate(self) -> None:
        assert self.actors and len(self.actors) <= subscription_actors_max
        assert 0 <= self._next_index < len(self.actors)
        assert len({id(actor) for actor in self.actors}) == len(self.actors)
        for actor in self.actors:
            assert actor.node is self.node
            actor.validate()

    # ----- switches that apply to every actor ------------------------------

    @property
    def validate_each_step(self) -> bool:
        """Tests set it to check every actor's invariants at the top of each
        of its loop iterations (SubscriptionActor.validate_each_step)."""
        return all(actor.validate_each_step for actor in self.actors)

    @validate_each_step.setter
    def validate_each_step(self, on: bool) -> None:
        for actor in self.actors:
            actor.validate_each_step = on

    @property
    def use_views(self) -> bool:
        """Views on (the default) in every actor; set it before the first
        subscription (SubscriptionActor.use_views)."""
        return all(actor.use_views for actor in self.actors)

    @use_views.setter
    def use_views(self, on: bool) -> None:
        for actor in self.actors:
            actor.use_views = on


"""The simulated world: its objects and state, and the parts that act on calls.

`world.World` composes them: `state` (lock, config, clock, ids, objects), `tokens`, `budgets`
(budgets, blocks, permission denials), `faults` and `log` (the call log). Nothing here knows
HTTP; metasim.api serves it.
"""

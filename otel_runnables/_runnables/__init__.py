"""The runnables: `Runnable` and its concrete kinds."""

from otel_runnables._runnables.base import (
    AddableDict,
    Runnable,
    RunnableBinding,
    coerce_to_runnable,
    register_coercer,
)
from otel_runnables._runnables.lambdas import RunnableLambda, chain
from otel_runnables._runnables.parallel import RunnableParallel
from otel_runnables._runnables.passthrough import RunnablePassthrough
from otel_runnables._runnables.sequence import RunnableSequence

__all__ = [
    "AddableDict",
    "Runnable",
    "RunnableBinding",
    "RunnableLambda",
    "RunnableParallel",
    "RunnablePassthrough",
    "RunnableSequence",
    "chain",
    "coerce_to_runnable",
    "register_coercer",
]

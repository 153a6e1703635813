"""ARNs of the job workflow's Step Functions executions (pure)."""

from __future__ import annotations


def execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:aws:states:R:A:stateMachine:M → arn:aws:states:R:A:execution:M:name (with name "", the prefix every
    execution ARN of that state machine starts with)."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name

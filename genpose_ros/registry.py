"""Named implementations of one kind (SDEs, ODE solvers, samplers, schedules), registered with a
decorator and looked up by name from configs, with a clear error for unknown names."""
from __future__ import annotations


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        """Decorator: ``@REGISTRY.register("name")`` adds the function or class under ``name``."""
        def wrap(obj):
            self[name] = obj
            return obj
        return wrap

    def lookup(self, name: str):
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {sorted(self)}")
        return self[name]

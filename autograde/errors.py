"""Every exception the grading engine raises or catches, in one place (no module imports another just for
its exceptions, so registry, runner, backends and sandbox form no import circle).

Learner-facing outcomes of one call (`LearnerRaised`, `NotImplementedYet`, `ForbiddenUsed`, `ImportFailed`)
become a case's or an exercise's status; `UsageError` and `SandboxError` become a one-line message and a
non-zero exit of the command; `GraderDefinitionError` is a mistake in a grader file, found at load time.
"""


class UsageError(Exception):
    """Bad input from the user (unknown exercise, missing folder): a one-line message."""


class GraderDefinitionError(Exception):
    """A grader file declares something impossible (an unknown dependency, a class as a dependency...)."""


class SandboxError(Exception):
    """The submission could not be prepared or a worker could not be started."""


class WorkerGone(Exception):
    """The worker died, hung past its wall time or CPU budget, or broke the protocol."""

    def __init__(self, reason, timed_out=False):
        super().__init__(reason)
        self.reason, self.timed_out = reason, timed_out


class CaseFailed(Exception):
    """The learner's code returned something wrong (the message is learner-facing)."""


class CaseSkipped(Exception):
    """A case that cannot run here (no CUDA device): it does not count towards the score."""


class LearnerRaised(Exception):
    """The learner's code raised; `info` holds type, message and the line in their file."""

    def __init__(self, info):
        super().__init__(info.get("message", ""))
        self.info = info


class NotImplementedYet(Exception):
    pass


class ForbiddenUsed(Exception):
    def __init__(self, names, message=None):
        super().__init__(", ".join(names))
        self.names = names
        self.message = message or (f"calls {', '.join(names)}, which this exercise forbids: "
                                   "implement it yourself")


class ImportFailed(Exception):
    def __init__(self, info):
        super().__init__(info.get("message", ""))
        self.info = info

"""Exceptions thrifty raises. Every message says what happened and what to do next."""

from __future__ import annotations


class ThriftyError(Exception):
    """Base class for every error thrifty raises on purpose.

    ``exit_code`` is what the CLI exits with: 2 for what the user asked for (options, config, input
    files: fix and re-run), 1 for a :class:`RunError` (the run itself failed).
    """

    exit_code = 2


class RunError(ThriftyError):
    """The run started and failed (teacher unreachable, nothing left to label, corrupt model file)."""

    exit_code = 1


class ConfigError(ThriftyError):
    """The run's configuration is invalid; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: "list[str] | str"):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            super().__init__(f"{len(self.problems)} problems with the configuration: " + " | ".join(self.problems))


class CorpusError(ThriftyError):
    """A corpus file is missing, malformed or lacks a requested column."""


class TaskError(ThriftyError):
    """The label set or prompt definition is invalid."""


class TeacherError(RunError):
    """The teacher could not be reached or kept failing after retries.

    Labels already paid for are in the ledger; re-running resumes from there.
    """


class LedgerError(RunError):
    """A ledger cannot be opened, is not a thrifty ledger, or was asked for something it does not do."""


class GeneratorError(RunError):
    """PGKD's generator could not be reached, refused the request or sent an unusable answer.

    What was paid for is in the ledger; re-running resumes from there.
    """


class EmptyPoolError(RunError):
    """No unlabelled documents are left to select from."""


class ModelIntegrityError(RunError):
    """A model file does not match its pinned sha256."""


class UnknownLabelError(ThriftyError):
    """A label that is not in the task's label set was given."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, after the requests in flight were waited for; the message says what was saved and what may be billed."""

"""Member commands: run now, retry, cancel, approve, dismiss, disposition, enable/disable, add an intake source, import.

Each command checks its actor's permission itself, checks eligibility with a ``check_*`` guard that raises
a named error saying why not, and records the member's act in the audit log in the same transaction as
the change it makes. Pages, the CLI and the intake endpoint all call these; ``named`` maps the names the
CLI and the endpoint use onto them.
"""

from engine.commands.approvals import (
                                       FourEyesConflict,
                                       approve_item,
                                       check_four_eyes,
                                       check_segregation_of_duties,
                                       dismiss_item,
                                       four_eyes_conflict,
)
from engine.commands.automations import AUTOMATION_REFUSALS, RunNowPreview, preview_run_now, run_now, set_enabled
from engine.commands.cancel import cancel_run, check_cancellable
from engine.commands.dispositions import (
                                       DispositionPlan,
                                       check_disposition_eligible,
                                       disposition_item,
                                       disposition_items,
                                       plan_dispositions,
)
from engine.commands.preview import DefinitionPreview, PreviewedSubject, preview_definition
from engine.commands.refusals import (
                                       COMMAND_REFUSALS,
                                       AlreadyDone,
                                       CommandRefused,
                                       FourEyesRefused,
                                       NotEligible,
                                       NotFound,
)
from engine.commands.registers import ImportReport, import_register
from engine.commands.retry import (
                                       RetryPlan,
                                       check_retry_eligible,
                                       check_still_retryable,
                                       plan_bulk_retry,
                                       plan_retry,
                                       retry_item,
                                       retry_items,
                                       retry_run,
)

__all__ = ["AUTOMATION_REFUSALS", "COMMAND_REFUSALS", "DefinitionPreview", "PreviewedSubject", "preview_definition",
           "DispositionPlan", "check_disposition_eligible",
           "disposition_item", "disposition_items", "plan_dispositions",
           "AlreadyDone", "CommandRefused", "FourEyesConflict", "FourEyesRefused",
           "ImportReport", "NotEligible", "NotFound", "RetryPlan", "RunNowPreview", "approve_item", "cancel_run",
           "check_cancellable", "check_four_eyes", "check_retry_eligible", "check_segregation_of_duties",
           "check_still_retryable", "dismiss_item", "four_eyes_conflict", "import_register", "plan_bulk_retry",
           "plan_retry", "preview_run_now", "retry_item", "retry_items", "retry_run", "run_now", "set_enabled"]

"""Every route of /v1 in one table: method, path, the minimum role, models, the one service it calls.

The role column is the authorization policy; `authorize` in services.identity enforces it for every
route that has an {org_id}, so no handler can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

from firebackup.api import schemas as s
from firebackup.services import jobs, keys, orgs, pitr, resources, retention, webhooks
from firebackup.services.context import Role


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[..., Any]
    role: Role | None  # None: any authenticated caller, no organization in the path
    response: type[BaseModel] | None = None  # None: 204 No Content
    status: int = 200
    body: type[s.ApiRequest] | None = None  # its command is the handler's last argument (before the query's)
    query: type[s.ApiRequest] | None = None
    paged: bool = False
    summary: str = ""

    @property
    def params(self) -> list[str]:
        return [p[1:-1] for p in self.path.split("/") if p.startswith("{")]

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


V, M, A, O = Role.viewer, Role.member, Role.admin, Role.owner
P = s.PageQuery
ORG = "/orgs/{org_id}"


def _list(path: str, handler: Callable[..., Any], role: Role | None, item: type[BaseModel],
          query: type[s.ApiRequest] = P, summary: str = "") -> Route:
    return Route("GET", path, handler, role, s.page_of(item), body=None, query=query, paged=True, summary=summary)


ROUTES: list[Route] = [
    Route("GET", "/me", orgs.me, None, s.MeOut, summary="Who is calling"),
    _list("/orgs", orgs.list_orgs, None, s.OrgOut, summary="Organizations you belong to"),
    Route("POST", "/orgs", orgs.create_org, None, s.OrgOut, 201, s.OrgIn, summary="Create an organization (you become owner)"),
    Route("GET", ORG, orgs.get_org, V, s.OrgOut),
    Route("PATCH", ORG, orgs.rename_org, A, s.OrgOut, body=s.OrgPatch),
    Route("DELETE", ORG, orgs.delete_org, O, summary="Delete the organization and everything in it"),
    Route("GET", ORG + "/encryption", keys.get_encryption, V, s.EncryptionOut),
    Route("PUT", ORG + "/encryption", keys.set_encryption, A, s.EncryptionOut, body=s.EncryptionIn,
          summary="Wrap new backups' data keys with the organization's own Cloud KMS key (BYOK)"),
    Route("POST", ORG + "/encryption/rotate", keys.rotate_encryption, A, s.RotationOut, 202, s.EncryptionIn,
          summary="Start a job that re-wraps every completed backup's data key under a Cloud KMS key"),
    Route("GET", ORG + "/encryption/rotations/{rotation_id}", keys.get_rotation, V, s.RotationOut),
    _list(ORG + "/members", orgs.list_members, V, s.MemberOut),
    Route("POST", ORG + "/members", orgs.invite_member, A, s.MemberOut, 201, s.MemberIn, summary="Invite by email"),
    Route("PATCH", ORG + "/members/{user_id}", orgs.change_role, A, s.MemberOut, body=s.MemberPatch),
    Route("DELETE", ORG + "/members/{user_id}", orgs.remove_member, A),
    Route("POST", ORG + "/leave", orgs.leave, V, summary="Leave the organization (the last owner cannot)"),
    _list(ORG + "/projects", resources.list_projects, V, s.ProjectOut),
    Route("POST", ORG + "/projects", resources.connect_project, A, s.ProjectOut, 201, s.ProjectIn,
          summary="Connect a project with a service-account key"),
    Route("POST", ORG + "/projects/oauth/start", resources.oauth_start, A, s.OAuthStartOut,
          summary="Begin connecting a project through Google OAuth"),
    Route("POST", ORG + "/projects/oauth/complete", resources.oauth_complete, A, s.ProjectOut, 201, s.OAuthCompleteIn,
          summary="Finish the OAuth flow; the refresh token is stored sealed"),
    Route("GET", ORG + "/projects/{project_id}", resources.get_project, V, s.ProjectOut),
    Route("DELETE", ORG + "/projects/{project_id}", resources.delete_project, A, query=s.DeleteWithBackupsQuery,
          summary="Delete a project; with backups on record, say ?backups=delete or ?backups=detach"),
    Route("POST", ORG + "/projects/{project_id}/test", resources.test_project, M, s.TestResultOut),
    Route("GET", ORG + "/projects/{project_id}/pitr", pitr.window, V, s.PitrOut,
          summary="Point-in-time recovery: settings and the covered window (earliest, latest, gaps)"),
    Route("PUT", ORG + "/projects/{project_id}/pitr", pitr.configure, A, s.PitrOut, body=s.PitrIn,
          summary="Turn point-in-time recovery on or off, with a retention in days"),
    Route("GET", ORG + "/projects/{project_id}/pitr/history", pitr.document_history, V, s.PitrHistoryOut,
          query=s.PitrHistoryQuery,
          summary="One document's versions in backups and captured changes; with at and until, a field-level diff"),
    Route("POST", ORG + "/projects/{project_id}/pitr/restore", pitr.restore, M, s.RestoreOut, 202, s.PitrRestoreIn,
          summary="Start restoring the database as of an instant (base backup + captured changes): a restore job"),
    _list(ORG + "/destinations", resources.list_destinations, V, s.DestinationOut),
    Route("POST", ORG + "/destinations", resources.create_destination, A, s.DestinationOut, 201, s.DestinationIn),
    Route("GET", ORG + "/destinations/{destination_id}", resources.get_destination, V, s.DestinationOut),
    Route("DELETE", ORG + "/destinations/{destination_id}", resources.delete_destination, A,
          query=s.DeleteWithBackupsQuery,
          summary="Delete a destination; with backups on record, say ?backups=delete or ?backups=detach"),
    Route("POST", ORG + "/destinations/{destination_id}/test", resources.test_destination, M, s.TestResultOut,
          summary="Write and delete a probe object"),
    _list(ORG + "/backups", jobs.list_backups, V, s.BackupOut),
    Route("POST", ORG + "/backups", jobs.start_backup, M, s.BackupOut, 202, s.BackupIn),
    Route("GET", ORG + "/backups/{backup_id}", jobs.get_backup, V, s.BackupOut),
    Route("DELETE", ORG + "/backups/{backup_id}", jobs.delete_backup, A),
    Route("POST", ORG + "/backups/{backup_id}/cancel", jobs.cancel_backup, M, s.BackupOut),
    Route("POST", ORG + "/backups/{backup_id}/verify", jobs.verify_backup, M, s.BackupOut, 202),
    Route("GET", ORG + "/backups/{backup_id}/manifest", jobs.manifest_summary, V, s.ManifestSummaryOut),
    _list(ORG + "/restores", jobs.list_restores, V, s.RestoreOut),
    Route("POST", ORG + "/restores", jobs.start_restore, M, s.RestoreOut, 202, s.RestoreIn),
    Route("GET", ORG + "/restores/{restore_id}", jobs.get_restore, V, s.RestoreOut),
    Route("POST", ORG + "/restores/{restore_id}/cancel", jobs.cancel_restore, M, s.RestoreOut),
    _list(ORG + "/schedules", resources.list_schedules, V, s.ScheduleOut),
    Route("POST", ORG + "/schedules", resources.create_schedule, A, s.ScheduleOut, 201, s.ScheduleIn),
    Route("GET", ORG + "/schedules/{schedule_id}", resources.get_schedule, V, s.ScheduleOut),
    Route("PATCH", ORG + "/schedules/{schedule_id}", resources.update_schedule, A, s.ScheduleOut, body=s.SchedulePatch),
    Route("DELETE", ORG + "/schedules/{schedule_id}", resources.delete_schedule, A),
    Route("GET", ORG + "/schedules/{schedule_id}/next-runs", resources.next_runs, V, s.NextRunsOut,
          query=s.NextRunsQuery, summary="The next runs in the schedule's time zone; ?cron= and ?timezone= preview a change"),
    Route("GET", ORG + "/schedules/{schedule_id}/retention/preview", retention.preview_retention, V,
          s.RetentionPreviewOut, summary="Dry run of retention: what would be removed, and why each kept backup stays"),
    _list(ORG + "/webhooks", resources.list_webhooks, V, s.WebhookOut),
    Route("POST", ORG + "/webhooks", resources.create_webhook, A, s.WebhookOut, 201, s.WebhookIn),
    Route("GET", ORG + "/webhooks/{webhook_id}", resources.get_webhook, V, s.WebhookOut),
    Route("DELETE", ORG + "/webhooks/{webhook_id}", resources.delete_webhook, A),
    _list(ORG + "/webhooks/{webhook_id}/deliveries", webhooks.list_webhook_deliveries, V, s.WebhookDeliveryOut,
          summary="The webhook's delivery log, newest first"),
    _list(ORG + "/audit", orgs.list_audit, A, s.AuditOut, s.AuditQuery, summary="Audit log, newest first"),
    _list(ORG + "/tokens", orgs.list_tokens, A, s.TokenOut),
    Route("POST", ORG + "/tokens", orgs.create_token, A, s.TokenCreatedOut, 201, s.TokenIn,
          summary="Create an API token (shown once)"),
    Route("DELETE", ORG + "/tokens/{token_id}", orgs.revoke_token, A),
]

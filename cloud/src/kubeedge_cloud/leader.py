"""Which cloud replica does the cluster-wide chores: a ``coordination.k8s.io`` Lease leader.

Replicas of the cloud are active-active (each serves the edges connected to it); the few chores
that must run once for the whole cluster (:class:`kubeedge_cloud.nodes.NodeMonitor`: marking
NotReady the Nodes whose replica vanished) run only in the replica holding the Lease
``replica.leaseName`` in ``replica.leaseNamespace``. The election is client-go's
(``k8s.io/client-go/tools/leaderelection``), with its defaults:

* a candidate reads the Lease every ``retryPeriodSeconds`` (2 s, jittered); it takes the Lease
  when nobody holds it, or when the holder's record has not changed for ``leaseDurationSeconds``
  (15 s) *as this replica observed it* (its own monotonic clock, never the holder's timestamps:
  clocks of two machines disagree);
* every write is a ``replace`` carrying the ``resourceVersion`` that was read, so of two replicas
  racing for an expired Lease the API server lets one win and answers the other 409 Conflict;
* the leader renews every ``retryPeriodSeconds``; when no renewal has succeeded for
  ``renewDeadlineSeconds`` (10 s), or it finds another holder, it stops leading at once (its
  chores are cancelled), well before the others may take over (``leaseDurationSeconds``);
* a clean stop releases the Lease (holder cleared, duration 1 s), so another replica takes over
  at its next retry instead of after a whole lease duration.

A killed leader is replaced after at most ``leaseDurationSeconds`` + ``retryPeriodSeconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
JITTER = 1.2
"""client-go's JitterFactor: a wait of ``retryPeriod`` lasts up to 1.2 times as long."""


class ReplicaSettings(BaseModel):
    """``source.replica`` in cloud.yaml (Kubernetes source only): this replica's name and the
    leader election among replicas."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str | None = Field(default=None, min_length=1, max_length=253)
    """This replica's name: the Lease holder and each served Node's ``kubeedge.io/cloud-replica``.
    Default: ``$POD_NAME`` (deploy/ passes it through the downward API), else ``HOSTNAME-PID``."""
    leader_election: bool = Field(default=True, alias="leaderElection")
    """Take part in the election (off: this replica never runs the cluster-wide chores)."""
    lease_name: str = Field(default="kubeedge-cloud", alias="leaseName", min_length=1, max_length=253)
    lease_namespace: str | None = Field(default=None, alias="leaseNamespace", min_length=1, max_length=63)
    """Default: ``$POD_NAMESPACE``, else the pod's ServiceAccount namespace, else the kubeconfig
    context's namespace, else ``default``."""
    lease_duration_seconds: int = Field(default=15, alias="leaseDurationSeconds", ge=1)
    """How long others wait, after the leader's last renewal they saw, before taking over."""
    renew_deadline_seconds: float = Field(default=10.0, alias="renewDeadlineSeconds", gt=0)
    """The leader stops leading when no renewal succeeded for this long."""
    retry_period_seconds: float = Field(default=2.0, alias="retryPeriodSeconds", gt=0)
    """How often candidates try and the leader renews."""
    node_monitor_period_seconds: float = Field(default=5.0, alias="nodeMonitorPeriodSeconds", gt=0)
    """How often the leader checks the edges' Node Leases (kube-controller-manager's
    ``--node-monitor-period``)."""

    @model_validator(mode="after")
    def _check_timing(self) -> ReplicaSettings:
        # client-go's own checks: a leader must give up before others may take over
        if self.lease_duration_seconds <= self.renew_deadline_seconds:
            raise ValueError("leaseDurationSeconds must be greater than renewDeadlineSeconds")
        if self.renew_deadline_seconds <= JITTER * self.retry_period_seconds:
            raise ValueError("renewDeadlineSeconds must be greater than 1.2 x retryPeriodSeconds")
        return self

    def replica_id(self) -> str:
        """``id``, else ``$POD_NAME``, else ``HOSTNAME-PID``."""
        return self.id or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"

    def namespace(self, kubeconfig_namespace: str | None) -> str:
        """Where the Lease lives: ``leaseNamespace``, else the pod's namespace, else the
        kubeconfig context's (``kubeconfig_namespace``), else ``default``."""
        if self.lease_namespace:
            return self.lease_namespace
        if os.environ.get("POD_NAMESPACE"):
            return os.environ["POD_NAMESPACE"]
        with contextlib.suppress(OSError):
            with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as file:
                found = file.read().strip()
            if found:
                return found
        return kubeconfig_namespace or "default"


def client_time(at: datetime) -> datetime:
    """``at`` as the client must send a MicroTime: the client serialises datetimes with
    ``isoformat()``, which leaves out the fraction when it is zero, and the API server then
    refuses the time (MicroTime wants six digits). One microsecond later is harmless."""
    return at if at.microsecond else at.replace(microsecond=1)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def api_error(exc: BaseException) -> str:
    """An API error said in a line: the HTTP status and the server's message."""
    status = _status(exc)
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    message = getattr(exc, "reason", "") or ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        message = json.loads(getattr(exc, "body", None) or "{}").get("message") or message
    return f"HTTP {status}: {message}"


class LeaderElector:
    """Runs ``lead()`` while this replica holds the Lease; see the module's docstring."""

    def __init__(
        self,
        api_client: Any,
        settings: ReplicaSettings,
        identity: str,
        namespace: str,
        lead: Callable[[], Awaitable[None]],
    ) -> None:
        from kubernetes.aio import client

        self._client = client
        self.coordination = client.CoordinationV1Api(api_client)
        self.settings = settings
        self.identity = identity
        self.namespace = namespace
        self._lead = lead
        self.leading = asyncio.Event()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._chores: asyncio.Task[None] | None = None
        self._logged = ""

    def _warn(self, doing: str, exc: BaseException) -> None:
        """Said at WARNING once per reason (a candidate retries every ``retryPeriodSeconds``)."""
        reason = f"leader election: cannot {doing} Lease {self.where}: {api_error(exc)}"
        if _status(exc) == 403:
            reason += " (source.replica.leaseNamespace names where this identity may keep it)"
        if reason != self._logged:
            self._logged = reason
            log.warning("%s", reason)
        else:
            log.debug("%s", reason)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.settings.lease_name}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stop taking part; a leader stops leading and releases the Lease."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        was_leading = self.leading.is_set()
        await self._stop_leading()
        if was_leading:
            try:
                await asyncio.wait_for(self._release(), self.settings.renew_deadline_seconds)
                log.info("leader election: %s released Lease %s", self.identity, self.where)
            except Exception as exc:
                log.warning("leader election: could not release Lease %s: %s", self.where, api_error(exc))

    async def _run(self) -> None:
        while True:
            await self._acquire()
            self._start_leading()
            await self._renew()
            await self._stop_leading()

    async def _sleep(self) -> None:
        await asyncio.sleep(self.settings.retry_period_seconds * random.uniform(1.0, JITTER))  # noqa: S311

    async def _acquire(self) -> None:
        while True:
            if await self._try():
                return
            await self._sleep()

    async def _renew(self) -> None:
        """Renew until a renewal deadline passes without success, or another holds the Lease."""
        settings = self.settings
        while True:
            deadline = time.monotonic() + settings.renew_deadline_seconds
            while True:
                left = deadline - time.monotonic()
                renewed = False
                if left > 0:
                    with contextlib.suppress(TimeoutError):
                        renewed = await asyncio.wait_for(self._try(), left)
                if renewed:
                    break
                if self._held_by_another() or time.monotonic() >= deadline:
                    log.info(
                        "leader election: %s lost the leadership (Lease %s: %s)",
                        self.identity,
                        self.where,
                        "held by " + str(self._observed[0])
                        if self._held_by_another() and self._observed
                        else f"not renewed for {settings.renew_deadline_seconds:g} s",
                    )
                    return
                await asyncio.sleep(settings.retry_period_seconds)
            await asyncio.sleep(settings.retry_period_seconds)

    def _held_by_another(self) -> bool:
        return bool(self._observed and self._observed[0] and self._observed[0] != self.identity)

    def _start_leading(self) -> None:
        self._logged = ""
        log.info("leader election: %s is the leader (Lease %s)", self.identity, self.where)
        self.leading.set()
        self._chores = asyncio.create_task(self._lead_supervised(), name="leader-chores")

    async def _lead_supervised(self) -> None:
        try:
            await self._lead()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leader election: the leader's chores failed")

    async def _stop_leading(self) -> None:
        self.leading.clear()
        if self._chores is not None:
            self._chores.cancel()
            await asyncio.gather(self._chores, return_exceptions=True)
            self._chores = None

    def _observe(self, spec: Any) -> None:
        """Remember the Lease's record and when it last changed, on this replica's clock."""
        record = (
            spec.holder_identity or "",
            spec.renew_time,
            spec.acquire_time,
            spec.lease_transitions,
            spec.lease_duration_seconds,
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()

    async def _try(self) -> bool:
        """client-go's tryAcquireOrRenew: True when this replica holds the Lease after the call."""
        settings = self.settings
        now = client_time(datetime.now(UTC))
        lease: Any
        try:
            lease = await self.coordination.read_namespaced_lease(settings.lease_name, self.namespace)
        except Exception as exc:
            if _status(exc) != 404:
                self._warn("read", exc)
                return False
            return await self._create(now)
        if lease.spec is None:
            lease.spec = self._client.V1LeaseSpec()
        spec = lease.spec
        self._observe(spec)
        holder = spec.holder_identity or ""
        duration = spec.lease_duration_seconds or settings.lease_duration_seconds
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            return False  # held, and renewed within its duration as far as this replica saw
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = settings.lease_duration_seconds
        spec.renew_time = now
        if spec.acquire_time is not None:
            spec.acquire_time = client_time(spec.acquire_time)
        try:
            # resourceVersion from the read: a replica that lost a race gets 409 Conflict
            written = await self.coordination.replace_namespaced_lease(
                settings.lease_name, self.namespace, lease
            )
        except Exception as exc:
            if _status(exc) != 409:
                self._warn("write", exc)
            return False
        self._observe(written.spec)
        return True

    async def _create(self, now: datetime) -> bool:
        settings = self.settings
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": settings.lease_name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": settings.lease_duration_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self.coordination.create_namespaced_lease(
                self.namespace,
                self._client.V1Lease.from_dict(body),  # type: ignore[arg-type]
            )
        except Exception as exc:
            if _status(exc) != 409:  # 409: another replica made it first
                self._warn("create", exc)
            return False
        self._observe(created.spec)
        return True

    async def _release(self) -> None:
        """Clear the holder (client-go's ReleaseOnCancel), if this replica still holds it."""
        lease: Any = await self.coordination.read_namespaced_lease(self.settings.lease_name, self.namespace)
        spec = lease.spec
        if spec is None or spec.holder_identity != self.identity:
            return
        now = client_time(datetime.now(UTC))
        spec.holder_identity = None
        spec.lease_duration_seconds = 1
        spec.renew_time = now
        spec.acquire_time = now
        await self.coordination.replace_namespaced_lease(self.settings.lease_name, self.namespace, lease)

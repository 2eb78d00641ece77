"""Concurrent scoring requests served by shared scoring calls.

A scoring call has a fixed cost (~10 ms: frames, validation, the feature transform, the
model's set-up) next to 1-2 ms per claim, so single-claim requests scored in calls of ten cost
a sixth of what they cost one by one. Threads do not help, since the GIL lets one of them run
Python at a time; a thread pool scoring requests side by side only adds contention.

So the scoring route hands its :class:`~serving.api.scoring.PreparedRequest` to
:meth:`ScoringCoalescer.score` and awaits the answer. One worker thread takes every request
waiting (a *round*), splits the round into calls that can be shared (same model, same
options, and the conditions of :class:`~serving.api.scoring.SharedCall`), scores each call once
(:func:`~serving.api.scoring.score_together`) and hands each request its own part. Requests
that arrive during a round form the next one, so nobody waits for a window to fill, and the
busier the service, the larger the calls.

The thread is started by the app's lifespan (or by the first request), never at import, and
stopped there after the requests still waiting have been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass

from serving.api.scoring import (
    PreparedRequest,
    ScoringOutcome,
    SharedCall,
    score_together,
)
from serving.service import ScoringService

logger = logging.getLogger("denial_risk.api")

_Answer = ScoringOutcome | BaseException

SWITCH_INTERVAL_SECONDS = 0.001
"""The interpreter's thread switch interval while the app runs (the default is 5 ms).

The scoring thread runs Python for tens of milliseconds at a time. The event loop gives up the
GIL on every socket call (and ``os.urandom``) and must then wait for a switch to get it back, so
with 5 ms each request spent milliseconds waiting; 1 ms served a third more requests per second
in ``benchmarks/bench_http.py``.
"""


class ScoringTimeout(Exception):
    """A request waited longer than the configured timeout for its scoring call."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"scoring did not finish within {seconds:g} s (DENIAL_RISK_SCORING_TIMEOUT_SECONDS): "
            "the service is overloaded; retry later, or send the claims in smaller batches"
        )


@dataclass(eq=False)
class _Waiting:
    """A request in the queue, with the model it took and where its answer goes."""

    service: ScoringService
    request: PreparedRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ScoringOutcome]


class ScoringCoalescer:
    """Scores concurrent requests in shared calls on one worker thread (see module docstring).

    ``max_claims_per_call`` caps the claims of one call (a larger request is scored alone);
    ``timeout_seconds`` bounds how long a request waits for its answer.
    """

    def __init__(self, max_claims_per_call: int, timeout_seconds: float) -> None:
        self.max_claims_per_call = max_claims_per_call
        self.timeout_seconds = timeout_seconds
        self._waiting: deque[_Waiting] = deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread (no-op when it runs)."""
        with self._condition:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            # A daemon, so an app whose lifespan never ran cannot keep the process alive.
            self._thread = threading.Thread(target=self._work, name="scoring", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Answer the requests still waiting, then end the worker thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    # -- the route's side ----------------------------------------------------------------------
    async def score(self, service: ScoringService, request: PreparedRequest) -> ScoringOutcome:
        """The request's answer, scored with whatever else is waiting.

        Raises what scoring it alone would raise (:class:`NothingScored`, or an unexpected
        error), and :class:`ScoringTimeout` after ``timeout_seconds``.
        """
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScoringOutcome] = loop.create_future()
        with self._condition:
            self._waiting.append(_Waiting(service, request, loop, future))
            self._condition.notify()
        try:
            return await asyncio.wait_for(future, self.timeout_seconds)
        except TimeoutError:
            # wait_for cancelled the future: the worker skips the request if not begun.
            raise ScoringTimeout(self.timeout_seconds) from None

    # -- the worker's side ---------------------------------------------------------------------
    def _work(self) -> None:
        while (waiting := self._next_round()) is not None:
            try:
                for service, call, members in self._calls(waiting):
                    answers = self._score(service, call.requests)
                    for member, answer in zip(members, answers, strict=True):
                        _settle(member, answer)
            except Exception as error:  # a bug here must not end the thread (or hang requests)
                for member in waiting:
                    _settle(member, error)  # those already answered keep their answer

    def _next_round(self) -> list[_Waiting] | None:
        """Every request waiting, up to ``max_claims_per_call`` claims; None once stopped."""
        with self._condition:
            while not self._waiting:
                if self._stopping:
                    return None
                self._condition.wait()
            taken: list[_Waiting] = []
            claims = 0
            while self._waiting:
                waiting = self._waiting[0]
                # A done future here was cancelled: its caller timed out and went away.
                if waiting.future.done():
                    self._waiting.popleft()
                    continue
                if taken and claims + len(waiting.request) > self.max_claims_per_call:
                    break
                taken.append(self._waiting.popleft())
                claims += len(waiting.request)
            return taken

    def _calls(
        self, waiting: list[_Waiting]
    ) -> list[tuple[ScoringService, SharedCall, list[_Waiting]]]:
        """The round split into shareable calls, first come first placed."""
        calls: list[tuple[ScoringService, SharedCall, list[_Waiting]]] = []
        for member in waiting:
            for service, call, members in calls:
                # The model the request took when it arrived: a reload never changes it.
                if service is member.service and call.admits(member.request):
                    call.add(member.request)
                    members.append(member)
                    break
            else:
                call = SharedCall(self.max_claims_per_call)
                call.add(member.request)
                calls.append((member.service, call, [member]))
        return calls

    def _score(self, service: ScoringService, requests: list[PreparedRequest]) -> list[_Answer]:
        """One answer per request; a failed shared call is retried request by request, so each
        request gets the error it would have got alone (and the others their scores)."""
        try:
            return list(score_together(service, requests))
        except Exception as error:
            if len(requests) == 1:
                return [error]
            logger.warning(
                json.dumps(
                    {
                        "event": "shared_scoring_failed",
                        "requests": len(requests),
                        "error_type": type(error).__name__,  # messages can quote claim values
                    }
                )
            )
        answers: list[_Answer] = []
        for request in requests:
            answers.extend(self._score(service, [request]))
        return answers


def _settle(waiting: _Waiting, answer: _Answer) -> None:
    """Hand the answer to the request's event loop (futures are not thread-safe)."""

    def settle() -> None:
        if waiting.future.done():  # timed out meanwhile
            return
        if isinstance(answer, BaseException):
            waiting.future.set_exception(answer)
        else:
            waiting.future.set_result(answer)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        waiting.loop.call_soon_threadsafe(settle)


__all__ = ["SWITCH_INTERVAL_SECONDS", "ScoringCoalescer", "ScoringTimeout"]

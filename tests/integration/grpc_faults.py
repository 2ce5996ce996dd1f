"""Faults injected into a gRPC channel to a real server: a stream cut part-way by a chosen status code."""

from __future__ import annotations

from typing import Any, Iterator

import grpc


class InjectedError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"{self._code.name} injected by the test\nafter the real server's responses"


class FaultyCall:
    """The real server stream, cut after `after` responses by an injected error."""

    def __init__(self, call: Any, after: int, code: grpc.StatusCode) -> None:
        self._call, self._after, self._code = call, after, code

    def __iter__(self) -> Iterator[bytes]:
        return self._responses()

    def _responses(self) -> Iterator[bytes]:
        for i, resp in enumerate(self._call):
            if i == self._after:
                self._call.cancel()  # the connection "drops": the server stream ends too
                raise InjectedError(self._code)
            yield resp

    def cancel(self) -> None:
        self._call.cancel()


class FaultInjector(grpc.UnaryStreamClientInterceptor):
    """Cuts RunQuery call number k (1-based) after faults[k] = (responses, status code)."""

    def __init__(self, faults: dict[int, tuple[int, grpc.StatusCode]]) -> None:
        self.faults = faults
        self.run_queries = 0
        self.injected = 0

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        call = continuation(client_call_details, request)
        method = client_call_details.method
        if not (method.decode() if isinstance(method, bytes) else method).endswith("/RunQuery"):
            return call
        self.run_queries += 1
        fault = self.faults.get(self.run_queries)
        if fault is None:
            return call
        self.injected += 1
        return FaultyCall(call, *fault)

"""What needs no model: the fast path reads MLflow's tabular JSON forms into a matrix (and hands
anything else to MLflow's own code), and the listening sockets give TCP_NODELAY."""

from __future__ import annotations

import numpy as np
import pytest

from mlstack.serving import fastpath

COLUMNS = ("a", "b")
TYPES = (float, int)


@pytest.mark.parametrize(
    ("payload", "matrix"),
    [
        ({"dataframe_split": {"columns": ["b", "a"], "data": [[1, 2.5]]}}, [[2.5, 1.0]]),
        ({"dataframe_records": [{"a": 1, "b": 2, "c": "x"}]}, [[1.0, 2.0]]),
        ({"inputs": {"a": [1.5, 2.5], "b": [3, 4]}}, [[1.5, 3.0], [2.5, 4.0]]),
        ({"instances": [{"a": 0.5, "b": 7}]}, [[0.5, 7.0]]),
    ],
)
def test_fast_path_reads_the_tabular_forms(payload, matrix) -> None:
    np.testing.assert_array_equal(fastpath.parse(payload, COLUMNS, TYPES), np.asarray(matrix))


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_records": [{"a": 1.0}]},  # missing column
        {"dataframe_records": [{"a": 1.0, "b": 2.5}]},  # float where an int is declared
        {"dataframe_records": [{"a": True, "b": 2}]},  # bool is not a number here
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0]]}},  # ragged
        {"dataframe_records": [{"a": 1.0, "b": 2}], "params": {"k": 1}},  # params
        {"inputs": {"a": [1.0, 2.0], "b": [3]}},  # columns of different lengths
        {"dataframe_records": []},  # empty
        [1, 2],
    ],
)
def test_fast_path_hands_anything_else_to_mlflow(payload) -> None:
    assert fastpath.parse(payload, COLUMNS, TYPES) is None


def test_bound_sockets_give_accepted_connections_tcp_nodelay() -> None:
    """Without proto=IPPROTO_TCP on the listener, asyncio leaves Nagle on (uvicorn #3149) and
    each kept-alive answer waits ~40 ms for a delayed ACK."""
    import asyncio
    import socket

    from mlstack.serving.sockets import bind_sockets
    from mlstack.stack import free_port

    async def nodelay_of_accepted(sock: socket.socket) -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader, writer) -> None:
            conn = writer.get_extra_info("socket")
            accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()

    port = free_port()
    sockets = bind_sockets("127.0.0.1", port, count=2)  # one per worker, same port
    assert [s.getsockname()[1] for s in sockets] == [port, port]
    for sock in sockets:
        assert sock.proto == socket.IPPROTO_TCP
        assert asyncio.run(nodelay_of_accepted(sock)) != 0

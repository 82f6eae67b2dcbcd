"""The leak check of tether's pytest plugin, run on generated test modules with pytester.

A test that leaves a task, a thread, a child process or a socket behind passes its call
and errors at its teardown, with a report naming each leak; what the test's fixtures
clean up, what is already finishing, and what existed before the test are not leaks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.testing.testing_support import run, setup

LINUX_PROC = Path("/proc/self/task").is_dir()


def test_a_leaked_task_fails_the_test_naming_its_coroutine(pytester: pytest.Pytester) -> None:
    """A task still pending after teardown is an error, named with where it waits."""
    setup(pytester)
    pytester.makepyfile(
        test_leak="""
        import asyncio
        import leaky

        async def test_forgets_a_task():
            asyncio.create_task(leaky.forever(), name="forgotten")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_forgets_a_task*",
            "tether: test_leak.py::test_forgets_a_task left 1 task behind after its teardown:",
            (
                "  - task 'forgotten' running forever(), suspended at leaky.py:* in forever: "
                "await asyncio.sleep(3600)"
            ),
            "*@pytest.mark.tether_allow_leaks('tasks')*",
        ]
    )


def test_a_leaked_thread_fails_the_test_naming_it(pytester: pytest.Pytester) -> None:
    """A thread started by the test and still alive after teardown is named."""
    setup(pytester)
    pytester.makepyfile(
        test_leak="""
        import leaky

        def test_starts_a_thread():
            leaky.thread("poller")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_starts_a_thread left 1 thread behind after its teardown:",
            "  - thread 'poller' running Event.wait, at *threading.py:* in wait: *",
        ]
    )


@pytest.mark.skipif(not LINUX_PROC, reason="child processes are found through Linux's /proc")
def test_a_leaked_child_process_fails_the_test_with_its_command_line(
    pytester: pytest.Pytester,
) -> None:
    """A child process still running after teardown is named by pid and command line."""
    setup(pytester)
    pytester.makepyfile(
        test_leak="""
        import leaky

        def test_spawns_a_child():
            print("child pid", leaky.child().pid)
        """
    )
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, errors=1)
    pid = next(line.split()[-1] for line in result.outlines if line.startswith("child pid"))
    result.stdout.fnmatch_lines(
        [
            "*test_spawns_a_child left 1 child process behind after its teardown:",
            f"  - child process {pid}: {sys.executable} -c 'import time; time.sleep(60)'",
        ]
    )


def test_a_leaked_socket_fails_the_test_with_its_address(pytester: pytest.Pytester) -> None:
    """An open socket is named by what it is and its address."""
    setup(pytester)
    pytester.makepyfile(
        test_leak="""
        import leaky

        def test_listens():
            print("port", leaky.listening_socket().getsockname()[1])
        """
    )
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, errors=1)
    port = next(line.split()[-1] for line in result.outlines if line.startswith("port "))
    result.stdout.fnmatch_lines(
        [
            "*test_listens left 1 socket behind after its teardown:",
            f"  - TCP socket listening on 127.0.0.1:{port} (fd *)",
        ]
    )


def test_one_report_lists_every_kind_left_behind(pytester: pytest.Pytester) -> None:
    """Leaks of several kinds are counted and listed together, in one error."""
    setup(pytester)
    pytester.makepyfile(
        test_leak="""
        import asyncio
        import leaky

        async def test_leaves_a_mess():
            asyncio.create_task(leaky.forever(), name="a")
            asyncio.create_task(leaky.forever(), name="b")
            leaky.thread("poller")
            leaky.listening_socket()
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*left 2 tasks, 1 thread and 1 socket behind after its teardown:",
            "  - task 'a' running forever()*",
            "  - task 'b' running forever()*",
            "  - thread 'poller'*",
            "  - TCP socket listening on 127.0.0.1:*",
            "*tether_allow_leaks('tasks', 'threads', 'sockets')*",
        ]
    )


def test_the_marker_without_kinds_allows_every_leak(pytester: pytest.Pytester) -> None:
    """@pytest.mark.tether_allow_leaks turns the check off for one test."""
    setup(pytester)
    pytester.makepyfile(
        test_leak="""
        import asyncio
        import pytest
        import leaky

        @pytest.mark.tether_allow_leaks
        async def test_leaks_on_purpose():
            asyncio.create_task(leaky.forever())
            leaky.thread("poller")

        def test_leaks_too():
            leaky.thread("other")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks_too*"])
    result.stdout.no_fnmatch_line("*test_leaks_on_purpose left*")


def test_the_marker_with_kinds_allows_only_those(pytester: pytest.Pytester) -> None:
    """tether_allow_leaks('threads') still reports a socket the test left open."""
    setup(pytester)
    pytester.makepyfile(
        test_leak="""
        import pytest
        import leaky

        pytestmark = pytest.mark.tether_allow_leaks("threads")

        def test_leaks_two_kinds():
            leaky.thread("poller")
            leaky.listening_socket()
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*left 1 socket behind after its teardown:"])
    result.stdout.no_fnmatch_line("*thread 'poller'*")


def test_the_marker_refuses_an_unknown_kind(pytester: pytest.Pytester) -> None:
    """A misspelt kind is an error at setup naming the kinds there are."""
    setup(pytester)
    pytester.makepyfile(
        test_leak="""
        import pytest

        @pytest.mark.tether_allow_leaks("thread")
        def test_misspelt():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_misspelt*",
            (
                "*unknown kind 'thread'. Name kinds among 'tasks', 'threads', 'processes', "
                "'sockets', or none to allow every kind."
            ),
        ]
    )


def test_the_ini_option_turns_the_check_off(pytester: pytest.Pytester) -> None:
    """tether_leak_check = false: leaks are not looked for in the whole project."""
    setup(pytester, ini="tether_leak_check = false")
    pytester.makepyfile(
        test_leak="""
        import asyncio
        import leaky

        async def test_leaks():
            asyncio.create_task(leaky.forever())
            leaky.thread("poller")
            leaky.listening_socket()
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_a_bad_grace_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """tether_leak_grace must be a number of seconds; the error says so."""
    setup(pytester, ini="tether_leak_grace = soon")
    pytester.makepyfile(test_ok="def test_ok(): pass")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tether_leak_grace = 'soon': expected a number of seconds*"])


def test_what_is_already_finishing_is_not_a_leak(pytester: pytest.Pytester) -> None:
    """A cancelled task not yet awaited, a thread about to end, a child being reaped: no error."""
    # The grace must cover a Python child starting and exiting on a loaded machine; the
    # check ends as soon as everything has finished, so a long grace costs nothing here.
    setup(pytester, ini="tether_leak_grace = 20")
    pytester.makepyfile(
        test_finishing="""
        import asyncio
        import subprocess
        import sys
        import threading

        import leaky

        async def test_cancels_without_awaiting():
            asyncio.create_task(leaky.forever()).cancel()

        def test_thread_about_to_end():
            threading.Thread(target=lambda: None).start()

        def test_child_exiting_with_a_waiter():
            process = subprocess.Popen([sys.executable, "-c", "pass"])
            threading.Thread(target=process.wait).start()
        """
    )
    run(pytester).assert_outcomes(passed=3)


def test_tasks_a_fixture_cleans_up_are_not_leaks(pytester: pytest.Pytester) -> None:
    """The check runs after every fixture's teardown, just before the loop closes."""
    setup(pytester)
    pytester.makepyfile(
        test_fixture="""
        import asyncio
        import pytest
        import leaky

        @pytest.fixture
        async def nursery():
            tasks = []
            yield tasks
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        @pytest.fixture
        def worker():
            thread = leaky.thread("worker")
            yield thread
            leaky.RELEASE.pop()()

        async def test_hands_tasks_to_a_fixture(nursery, worker):
            nursery.append(asyncio.create_task(leaky.forever()))
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_what_a_wider_fixture_sets_up_belongs_to_it(pytester: pytest.Pytester) -> None:
    """A session fixture's thread and socket, created during the first test, are not its leaks."""
    setup(pytester)
    pytester.makepyfile(
        test_session="""
        import pytest
        import leaky

        @pytest.fixture(scope="session")
        def server():
            sock = leaky.listening_socket()
            leaky.thread("acceptor")
            return sock

        def test_first(server):
            pass

        def test_second(server):
            pass
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_what_existed_before_the_test_is_not_its_leak(pytester: pytest.Pytester) -> None:
    """A thread and a socket made when the module was imported were there before the test."""
    setup(pytester)
    pytester.makepyfile(
        test_import_time="""
        import leaky

        SERVER = leaky.listening_socket()
        POLLER = leaky.thread("poller")

        def test_uses_them():
            assert POLLER.is_alive() and SERVER.fileno() >= 0
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_a_function_fixture_that_leaks_is_reported(pytester: pytest.Pytester) -> None:
    """A task an async fixture starts and never stops is the test's leak too."""
    setup(pytester)
    pytester.makepyfile(
        test_fixture="""
        import asyncio
        import pytest
        import leaky

        @pytest.fixture
        async def background():
            return asyncio.create_task(leaky.forever(), name="from-the-fixture")

        async def test_uses_it(background):
            assert not background.done()
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["  - task 'from-the-fixture' running forever()*"])


def test_a_module_loop_keeps_its_executor_threads(pytester: pytest.Pytester) -> None:
    """The default executor's workers live with their loop; a task left on it is reported."""
    setup(pytester)
    pytester.makepyfile(
        test_module_loop="""
        import asyncio
        import pytest
        import leaky

        pytestmark = pytest.mark.asyncio(loop_scope="module")

        async def test_uses_a_worker_thread():
            assert await asyncio.to_thread(lambda: 42) == 42

        async def test_leaves_a_task_on_the_module_loop():
            asyncio.create_task(leaky.forever(), name="on-module-loop")

        async def test_after():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_task_on_the_module_loop*",
            "  - task 'on-module-loop' running forever()*",
        ]
    )


def test_the_current_event_loop_is_asyncio_s_own(pytester: pytest.Pytester) -> None:
    """The loop set as the thread's current one keeps its self-pipe; its tasks are checked."""
    setup(pytester)
    pytester.makepyfile(
        test_current="""
        import asyncio
        import leaky

        def test_sets_a_current_loop():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            leaky.RELEASE.append(lambda: (asyncio.set_event_loop(None), loop.close()))

        def test_leaves_a_task_on_it():
            loop = asyncio.get_event_loop_policy().get_event_loop()
            task = loop.create_task(leaky.forever(), name="on-the-current-loop")
            leaky.RELEASE.append(lambda: (task.cancel(), loop.run_until_complete(asyncio.sleep(0))))
        """
    )
    result = run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves_a_task_on_it left 1 task behind after its teardown:",
            "  - task 'on-the-current-loop' running forever()*",
        ]
    )


def test_sync_projects_without_pytest_asyncio_are_checked_too(pytester: pytest.Pytester) -> None:
    """With pytest-asyncio disabled, sync tests run and threads are still checked."""
    setup(pytester)
    pytester.makepyfile(
        test_sync="""
        import leaky

        def test_clean():
            assert 1 + 1 == 2

        def test_leaks_a_thread():
            leaky.thread("poller")
        """
    )
    result = run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*test_leaks_a_thread left 1 thread behind*"])


def test_sockets_are_named_by_kind_and_addresses() -> None:
    """Listening, connected, datagram and unnamed sockets each read as what they are."""
    import socket

    from tether.testing._leaks import Resources, describe, snapshot

    before = snapshot([], ["sockets"])
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagram.bind(("127.0.0.1", 0))
    left, right = socket.socketpair()
    opened = [server, client, datagram, left, right]
    try:
        lines = describe(snapshot([], ["sockets"]) - before)["sockets"]
        server_port = server.getsockname()[1]
        client_port = client.getsockname()[1]
        unnamed = "Unix stream socket, unnamed (one end of a socket pair, or never bound)"
        assert lines == [
            f"TCP socket listening on 127.0.0.1:{server_port} (fd {server.fileno()})",
            f"TCP socket 127.0.0.1:{client_port} connected to 127.0.0.1:{server_port} (fd {client.fileno()})",  # noqa: E501
            f"UDP socket bound to 127.0.0.1:{datagram.getsockname()[1]} (fd {datagram.fileno()})",
            f"{unnamed} (fd {left.fileno()})",
            f"{unnamed} (fd {right.fileno()})",
        ]
        assert describe(Resources()) == {}
    finally:
        for sock in opened:
            sock.close()


@pytest.mark.skipif(not LINUX_PROC, reason="child processes are found through Linux's /proc")
def test_a_child_nobody_waited_for_is_named_as_such() -> None:
    """An exited child that was never waited for (a zombie) says so."""
    import subprocess
    import time

    from tether.testing._leaks import Resources, describe

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 5
        stat = Path(f"/proc/{process.pid}/stat")
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        (line,) = describe(Resources(processes=[process.pid]))["processes"]
        command = Path(sys.executable).name[:15]  # the kernel's name of the process
        assert line == f"child process {process.pid} [{command}]: exited, never waited for"
    finally:
        process.wait()

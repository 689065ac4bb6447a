import pytest

from rrg_local.jobs import MAX_ATTEMPTS, Jobs


@pytest.fixture
def jobs(db):
    now = "2024-01-01T00:00:00Z"
    for i in range(1, 6):
        db.execute(
            "INSERT INTO photos (id, hash, size, width, height, format, taken_at, taken_at_source, phash, thumb,"
            " added_at, updated_at) VALUES (?, ?, 1, 1, 1, 'JPEG', ?, 'exif', '0', 't', ?, ?)",
            [i, f"h{i}", now, now, now],
        )
    db.conn.commit()
    return Jobs(db)


def test_enqueue_is_idempotent_and_claim_marks_running(jobs):
    assert jobs.enqueue([1, 2, 3], "embed") == 3
    assert jobs.enqueue([1, 2, 3], "embed") == 0
    claimed = jobs.claim("embed", 2)
    assert [j.photo_id for j in claimed] == [1, 2]
    assert jobs.counts() == {"embed": {"running": 2, "pending": 1}}


def test_a_killed_worker_resumes_where_it_stopped(jobs):
    jobs.enqueue([1, 2, 3, 4], "embed")
    first = jobs.claim("embed", 2)
    jobs.finish([first[0].id])
    # The process dies here with first[1] still running; a new worker recovers it.
    assert jobs.recover() == 1
    rest = jobs.claim("embed", 10)
    assert sorted(j.photo_id for j in rest) == [2, 3, 4]


def test_failures_retry_until_the_limit(jobs):
    jobs.enqueue([5], "embed")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        (job,) = jobs.claim("embed", 1)
        assert job.attempts == attempt
        jobs.fail(job, "boom")
    assert jobs.claim("embed", 1) == []
    assert jobs.counts()["embed"] == {"failed": 1}


def test_requeue_again_resets_done_jobs(jobs):
    jobs.enqueue([1], "tag")
    jobs.finish([j.id for j in jobs.claim("tag", 1)])
    assert jobs.enqueue([1], "tag") == 0
    assert jobs.enqueue([1], "tag", again=True) == 1
    assert jobs.counts()["tag"] == {"pending": 1}


def test_two_processes_claiming_at_once_never_share_a_job(jobs, settings):
    """The other claimer strikes between this one's read and its write: the one moment a job could go to both."""
    import threading

    from rrg_local.db import open_db

    jobs.enqueue([1], "embed")
    jobs.db.conn.commit()
    second = open_db(settings.db_path)
    theirs: list = []
    other = threading.Thread(target=lambda: theirs.extend(Jobs(second).claim("embed", 5)))

    def strike(sql):
        if sql.startswith("UPDATE jobs SET state='running'") and not other.is_alive() and not theirs:
            other.start()
            other.join(1.0)  # a claim that could slip in has done so by now

    jobs.db.conn.set_trace_callback(strike)
    mine = jobs.claim("embed", 5)
    jobs.db.conn.set_trace_callback(None)
    other.join()
    assert [j.photo_id for j in mine] + [j.photo_id for j in theirs] == [1]
    assert jobs.counts() == {"embed": {"running": 1}}


def test_recover_takes_back_dead_and_own_jobs_and_leaves_a_live_workers(jobs):
    """`rrg tag` starting while the watcher tags: the watcher's running jobs stay its own."""
    import subprocess
    import time

    from rrg_local.jobs import _proc_stat, is_running, process_id

    jobs.enqueue([1, 2, 3, 4, 5], "tag")
    claimed = jobs.claim("tag", 5)
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["sleep", "60"])
    zombie = subprocess.Popen(["sleep", "60"])
    try:
        owners = [process_id(live.pid), process_id(dead.pid), process_id(zombie.pid), None]
        assert all(is_running(o) for o in owners[:3])
        dead.kill()
        dead.wait()
        zombie.kill()  # and not reaped: a zombie, which has stopped working all the same
        deadline = time.monotonic() + 30
        while _proc_stat(zombie.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not is_running(owners[2])
        for job, owner in zip(claimed[1:], owners, strict=True):
            jobs.db.execute("UPDATE jobs SET owner = ? WHERE id = ?", [owner, job.id])
        jobs.db.conn.commit()
        assert is_running(owners[0]) and not is_running(owners[1])
        assert jobs.recover() == 4  # this process's own, the dead one's, the zombie's, the unowned one
        running = jobs.db.execute("SELECT photo_id, owner FROM jobs WHERE state = 'running'").fetchall()
        assert running == [(claimed[1].photo_id, owners[0])]
        assert [j.photo_id for j in jobs.claim("tag", 5)] == [1, 3, 4, 5]
    finally:
        for proc in (live, zombie):
            proc.kill()
            proc.wait()

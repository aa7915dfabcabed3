import os
import threading
import time
import uuid

from oneflow_ai.domain.ids import time_ordered_hex, uuid4_hex


def test_uuid4_hex_is_a_random_version_4_uuid_in_hex() -> None:
    made = {uuid4_hex() for _ in range(1000)}
    assert len(made) == 1000
    for value in made:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_ids_never_repeat_across_blocks_and_threads() -> None:
    """Ids come from blocks of random bytes: each block's ids are handed out once, however
    many threads take them."""
    per_thread = 2000  # several blocks each

    def take(out: list[str]) -> None:
        out.extend(uuid4_hex() for _ in range(per_thread))

    made: list[list[str]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=take, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for out in made for value in out]
    assert len(set(every)) == len(every) == 4 * per_thread
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in every)


def test_a_forked_child_makes_ids_of_its_own() -> None:
    uuid4_hex()  # the parent holds a block with ids left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, "".join(uuid4_hex() for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    parent = "".join(uuid4_hex() for _ in range(4))
    assert len(child) == len(parent) == 128
    assert child != parent


def test_a_time_ordered_id_starts_with_the_time_and_sorts_after_older_ones() -> None:
    before = time.time_ns() // 1_000_000
    first = time_ordered_hex()
    time.sleep(0.002)
    later = [time_ordered_hex() for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    assert len({first, *later}) == 1001
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in [first, *later])
    assert before <= int(first[:12], 16) <= after
    assert all(value > first for value in later)

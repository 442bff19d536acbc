"""A custom Mesos executor on pymesos's own executor driver (used by test_mesos.py).

A task's `data` (base64) says what it does: `finish` (RUNNING, a message to the framework,
FINISHED), `fail` (RUNNING, FAILED) or `wait` (RUNNING until killed). A framework message
comes back prefixed with `echo:`."""

import sys

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data


class Echo(Executor):
    def launchTask(self, driver, task):
        tid = task["task_id"]
        what = decode_data(task.get("data", "")).decode() or "finish"
        driver.sendStatusUpdate({"task_id": tid, "state": "TASK_RUNNING"})
        if what == "finish":
            driver.sendFrameworkMessage(encode_data(b"done " + tid["value"].encode()))
            driver.sendStatusUpdate({"task_id": tid, "state": "TASK_FINISHED", "message": "echo finished"})
        elif what == "fail":
            driver.sendStatusUpdate({"task_id": tid, "state": "TASK_FAILED", "message": "echo was told to fail"})

    def killTask(self, driver, task_id):
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})

    def frameworkMessage(self, driver, message):
        driver.sendFrameworkMessage(encode_data(b"echo:" + decode_data(message)))


if __name__ == "__main__":
    MesosExecutorDriver(Echo()).run()
    sys.exit(0)

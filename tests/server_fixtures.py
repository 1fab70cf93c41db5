"""Fixtures for the server's tests: tiny trained chat models in a local store, and the
server as a pod runs it (``syllabus serve server``: a real uvicorn process with the real
embedded ``tritonserver`` from nvidia-pytriton, on a real nats-server).

``train_tiny(out, qa)`` makes a tiny random Llama (``init_tiny_model``) and fine-tunes it
for a moment on ``qa`` (question, answer) pairs, loss on the answer tokens only, so that
greedy decoding answers those questions with those answers: a model whose answers the
tests know, made in about a second with no download.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from syllabus.contracts import MODELS_DEPLOYED, ModelDeployed, TrainingCompleted
from syllabus.services.runtime import (
    EmbeddedNats,
    LocalStore,
    NatsSettings,
    Runtime,
    Settings,
    StoreSettings,
    free_port,
    replay,
)

__all__ = ["QA", "ServerPod", "chat_prompt", "greedy", "start_pod", "train_tiny",
           "upload_eval", "upload_model"]

QA = [("What does the waggle dance tell the other bees?", "The direction and distance to food."),
      ("How many queens does a colony have?", "One queen."),
      ("What do bees do in winter?", "They form a cluster and shiver to keep warm.")]
TOKEN = "server-test-token"


def chat_prompt(tokenizer: Any, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                         tokenize=False, add_generation_prompt=True)


def train_tiny(out: Path, qa: list[tuple[str, str]] = QA, *, steps: int = 80) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syllabus.services.runtime._tiny_model import init_tiny_model

    init_tiny_model(out)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    batch = []
    for question, answer in qa:
        prompt = tok(chat_prompt(tok, question), add_special_tokens=False)["input_ids"]
        target = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        batch.append((torch.tensor([prompt + target]),
                      torch.tensor([[-100] * len(prompt) + target])))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            loss = sum(model(input_ids=i, labels=labels).loss for i, labels in batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.save_pretrained(out)
    return out


def greedy(model_dir: Path, prompt: str, max_new_tokens: int) -> str:
    """What transformers' own ``generate`` answers (greedy), in this process."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def upload_model(store: LocalStore, model_id: str, model_dir: Path,
                 replace: dict[str, bytes] | None = None) -> str:
    prefix = f"models/{model_id}/"
    for f in sorted(model_dir.iterdir()):
        data = (replace or {}).get(f.name, f.read_bytes())
        store.put(prefix + f.name, data)
    return prefix


def upload_eval(store: LocalStore, dataset: str, qa: list[tuple[str, str]]) -> None:
    rows = [json.dumps({"messages": [{"role": "user", "content": q},
                                     {"role": "assistant", "content": a}]}) for q, a in qa]
    store.put(f"datasets/{dataset}/eval.jsonl", ("\n".join(rows) + "\n").encode())


@dataclass
class ServerPod:
    base: str
    token: str
    nats: EmbeddedNats
    store: LocalStore
    settings: Settings
    work_dir: Path
    log_path: Path
    command: list[str]
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the ``syllabus serve server`` process; return once it is ready."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.cwd)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(self.logs())
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the process (SIGTERM: uvicorn's shutdown stops the embedded Triton)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def api(self) -> str:
        return f"{self.base}/v1"

    def triton_endpoints(self) -> dict[str, str]:
        return json.loads((self.work_dir / "triton" / "endpoints.json").read_text())

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def run(self, fn: Callable[[Runtime], Any]) -> Any:
        """``await fn(rt)`` with a runtime on the pod's NATS and store."""
        async def go() -> Any:
            rt = Runtime.create(self.settings, store=self.store, client_name="server-tests")
            await rt.bus.start()
            try:
                return await fn(rt)
            finally:
                await rt.close()
        return asyncio.run(go())

    def deployed_events(self, model_id: str) -> list[ModelDeployed]:
        async def fetch(rt: Runtime) -> list[ModelDeployed]:
            events = [ModelDeployed.model_validate_json(m.data)
                      for m in await replay(rt.bus, MODELS_DEPLOYED)]
            return [e for e in events if e.model_id == model_id]
        return self.run(fetch)

    def publish(self, event: TrainingCompleted, *, msg_id: str | None = None) -> None:
        async def send(rt: Runtime) -> None:
            if msg_id is None:
                await rt.bus.publish(event)
            else:  # a redelivery-like second copy that JetStream does not de-duplicate
                await rt.bus._publish_raw(event.model_dump_json().encode(), event.subject,
                                          {"Nats-Msg-Id": msg_id})
        self.run(send)

    def wait_deployed(self, model_id: str, timeout: float = 120.0) -> ModelDeployed:
        deadline = time.monotonic() + timeout
        while True:
            events = self.deployed_events(model_id)
            if events:
                return events[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no models.deployed for {model_id} in {timeout}s; "
                                     f"pod log:\n{self.logs()}")
            time.sleep(0.5)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.base}/metrics", headers=self.auth, timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(name + ("{" if labels else " ")):
                head, _, value = line.rpartition(" ")
                got = head[len(name):].strip("{}")
                if ",".join(sorted(got.split(","))) == want or not labels:
                    return float(value)
        return 0.0


@contextlib.contextmanager
def start_pod(tmp: Path, **extra_env: str) -> Iterator[ServerPod]:
    """``syllabus serve server`` with a bearer token, small eval suites, a QA floor
    (``qa.exact_match`` >= 0.5) and prompts up to 1500 tokens, on its own nats-server and a local store under ``tmp``;
    ``extra_env`` adds or overrides ``SYLLABUS_...`` variables."""
    port = free_port()
    with EmbeddedNats(tmp / "nats") as nats:
        store_path = tmp / "store"
        store = LocalStore(store_path)
        settings = Settings(nats=NatsSettings(url=nats.url),
                            store=StoreSettings(kind="local", path=store_path))
        work_dir = tmp / "server"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
        env.update({
            "SYLLABUS_NATS__URL": nats.url,
            "SYLLABUS_STORE__KIND": "local",
            "SYLLABUS_STORE__PATH": str(store_path),
            "SYLLABUS_HTTP__TOKEN": TOKEN,
            "SYLLABUS_HTTP__PORT": str(port),
            "SYLLABUS_BUS__MAX_DELIVER": "3",
            "SYLLABUS_BUS__BACKOFF": "[0.5]",
            "SYLLABUS_SERVER__WORK_DIR": str(work_dir),
            "SYLLABUS_SERVER__TORCH_THREADS": "1",
            "SYLLABUS_SERVER__CONCURRENCY": "1",
            "SYLLABUS_SERVER__MAX_REQUEST_BYTES": "4096",
            "SYLLABUS_SERVER__MAX_TOKENS_LIMIT": "3000",
            "SYLLABUS_SERVER__MAX_PROMPT_TOKENS": "1500",
            "SYLLABUS_SERVER__EVAL_QA_LIMIT": "3",
            "SYLLABUS_SERVER__EVAL_SYCOPHANCY_LIMIT": "2",
            "SYLLABUS_SERVER__EVAL_MAX_TOKENS": "24",
            "SYLLABUS_SERVER__EVAL_FLOORS": json.dumps({"qa.exact_match": 0.5}),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        })
        env.update(extra_env)
        pod = ServerPod(base=f"http://127.0.0.1:{port}", token=TOKEN, nats=nats, store=store,
                        settings=settings, work_dir=work_dir, log_path=tmp / "pod.log",
                        command=[str(Path(sys.executable).parent / "syllabus"), "serve",
                                 "server", "--host", "127.0.0.1", "--port", str(port)],
                        env=env, cwd=tmp)
        try:
            pod.start()
            yield pod
        finally:
            pod.stop()

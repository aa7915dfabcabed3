// k6 mirror of `make bench` (bench/run.py) for users who have k6: non-streaming chat,
// streaming chat and /api/v1/estimate through the gateway, at concurrency 1, 10 and 100, and
// the same chat requests sent to the upstream directly, so the gateway's added latency can be
// read off side by side (k6 tags every request with its scenario and target).
//
//   k6 run -e GATEWAY_URL=http://127.0.0.1:8000 -e API_KEY=sk-... \
//          -e UPSTREAM_URL=http://127.0.0.1:9100/openai/v1 -e UPSTREAM_KEY=sk-fake \
//          tests/load/benchmark.js
//
// Start the upstream with `oneflow fake-providers` (zero added latency) and the gateway with
// `oneflow serve` pointed at it (OPENAI_BASE_URL); use a project API key so that auth, rate
// limits and the ledger run. DURATION (default 10s) is the length of each stage.

import http from "k6/http";
import { check } from "k6";

const GATEWAY = __ENV.GATEWAY_URL || "http://127.0.0.1:8000";
const API_KEY = __ENV.API_KEY || "";
const UPSTREAM = __ENV.UPSTREAM_URL || "";
const UPSTREAM_KEY = __ENV.UPSTREAM_KEY || "sk-fake";
const MODEL = __ENV.MODEL || "gpt-4o";
const DURATION = __ENV.DURATION || "10s";
const LEVELS = [1, 10, 100];

const CHAT = {
  model: MODEL,
  messages: [{ role: "user", content: "Write one sentence about the sea." }],
  max_tokens: 64,
};
const STREAM = Object.assign({}, CHAT, {
  stream: true,
  stream_options: { include_usage: true },
});
const ESTIMATE = {
  model: MODEL,
  input_tokens: 1500,
  output_tokens: 500,
  strategy: "cost_optimized",
};

// One scenario per (request, target, concurrency), run one after the other.
const PLAN = [];
for (const scenario of ["chat", "chat_stream", "estimate"]) {
  const targets = scenario === "estimate" || !UPSTREAM ? ["gateway"] : ["direct", "gateway"];
  for (const vus of LEVELS) {
    for (const target of targets) {
      PLAN.push({ scenario, target, vus });
    }
  }
}

function seconds(duration) {
  return parseInt(duration, 10) + 2; // the stage plus a pause between stages
}

export const options = {
  scenarios: Object.fromEntries(
    PLAN.map((step, i) => [
      `${step.scenario}_${step.target}_c${step.vus}`,
      {
        executor: "constant-vus",
        vus: step.vus,
        duration: DURATION,
        startTime: `${i * seconds(DURATION)}s`,
        exec: "request",
        env: { SCENARIO: step.scenario, TARGET: step.target },
        tags: { scenario_name: step.scenario, target: step.target, conc: String(step.vus) },
      },
    ]),
  ),
  summaryTrendStats: ["avg", "med", "p(90)", "p(99)", "max"],
  thresholds: { http_req_failed: ["rate<0.001"] },
};

export function request() {
  const scenario = __ENV.SCENARIO;
  const direct = __ENV.TARGET === "direct";
  const body = { chat: CHAT, chat_stream: STREAM, estimate: ESTIMATE }[scenario];
  let url = `${GATEWAY}/v1/chat/completions`;
  if (scenario === "estimate") {
    url = `${GATEWAY}/api/v1/estimate`;
  } else if (direct) {
    url = `${UPSTREAM}/chat/completions`;
  }
  const key = direct ? UPSTREAM_KEY : API_KEY;
  const response = http.post(url, JSON.stringify(body), {
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
  });
  check(response, { "status is 200": (r) => r.status === 200 });
}

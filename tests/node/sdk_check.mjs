// The official `openai` npm SDK through a running OneFlow gateway: chat completions (plain and
// streamed), the Responses API (plain, streamed, a function tool round trip with
// previous_response_id), embeddings and an audio transcription, for an OpenAI model and, for
// chat and responses, a Claude model. Prints one JSON line of what came back; any failure is
// an exception and a non-zero exit.
//
//   ONEFLOW_BASE_URL=http://127.0.0.1:8000 ONEFLOW_API_KEY=sk-... node sdk_check.mjs
//
// tests/node/test_openai_node_sdk.py runs it against the fake providers and checks the line.

import { createHash } from "node:crypto";

import OpenAI, { toFile } from "openai";
import { VERSION } from "openai/version";

const BASE_URL = process.env.ONEFLOW_BASE_URL;
const API_KEY = process.env.ONEFLOW_API_KEY;
if (!BASE_URL || !API_KEY) {
  console.error("set ONEFLOW_BASE_URL (the gateway, without /v1) and ONEFLOW_API_KEY");
  process.exit(2);
}

const CHAT_MODELS = (process.env.ONEFLOW_CHAT_MODELS ?? "gpt-4o,claude-3-haiku-20240307").split(",");
const EMBEDDING_MODEL = process.env.ONEFLOW_EMBEDDING_MODEL ?? "text-embedding-3-small";
const TRANSCRIPTION_MODEL = process.env.ONEFLOW_TRANSCRIPTION_MODEL ?? "whisper-1";
const WEATHER = {
  type: "function",
  name: "get_weather",
  description: "The weather in a city",
  parameters: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
  },
};

const client = new OpenAI({
  baseURL: `${BASE_URL.replace(/\/$/, "")}/v1`,
  apiKey: API_KEY,
  maxRetries: 0,
  timeout: 30_000,
});

/** What OneFlow says about a call in its response headers. */
function oneflowHeaders(response) {
  return {
    model: response.headers.get("x-oneflow-model"),
    provider: response.headers.get("x-oneflow-provider"),
    credits: response.headers.get("x-oneflow-credits"),
  };
}

/** The response's text. The SDK's `finalResponse()` of a stream carries no `output_text` (only
 * `create` and `retrieve` add it), so it is read from the output items. */
function textOf(response) {
  return response.output
    .filter((item) => item.type === "message")
    .flatMap((item) => item.content)
    .filter((part) => part.type === "output_text")
    .map((part) => part.text)
    .join("");
}

async function chatPlain(model) {
  const { data, response } = await client.chat.completions
    .create({ model, messages: [{ role: "user", content: "Hello from Node" }], max_tokens: 50 })
    .withResponse();
  return {
    text: data.choices[0].message.content,
    finish_reason: data.choices[0].finish_reason,
    usage: data.usage,
    headers: oneflowHeaders(response),
  };
}

async function chatStreamed(model) {
  const { data: stream, response } = await client.chat.completions
    .create({
      model,
      messages: [{ role: "user", content: "Stream to Node" }],
      max_tokens: 50,
      stream: true,
      stream_options: { include_usage: true },
    })
    .withResponse();
  let text = "";
  let chunks = 0;
  let usage = null;
  let oneflow = null;
  for await (const chunk of stream) {
    chunks += 1;
    text += chunk.choices[0]?.delta?.content ?? "";
    usage = chunk.usage ?? usage;
    oneflow = chunk.oneflow ?? oneflow; // OneFlow's usage and credits on the last chunk
  }
  return { text, chunks, usage, oneflow, headers: oneflowHeaders(response) };
}

async function responsePlain(model) {
  const { data, response } = await client.responses
    .create({ model, input: "Tell me about the gateway", instructions: "Be brief" })
    .withResponse();
  return {
    id: data.id,
    status: data.status,
    text: data.output_text,
    usage: data.usage,
    headers: oneflowHeaders(response),
  };
}

async function responseStreamed(model) {
  const stream = client.responses.stream({ model, input: "Stream the gateway to Node" });
  const events = [];
  let deltas = "";
  let oneflow = null;
  for await (const event of stream) {
    events.push(event.type);
    if (event.type === "response.output_text.delta") deltas += event.delta;
    if (event.type === "response.completed") oneflow = event.oneflow ?? null;
  }
  const final = await stream.finalResponse();
  const stored = await client.responses.retrieve(final.id);
  return {
    id: final.id,
    text: textOf(final),
    deltas,
    first_event: events[0],
    last_event: events.at(-1),
    events: events.length,
    usage: final.usage,
    oneflow,
    stored_text: stored.output_text,
  };
}

async function toolRoundTrip(model) {
  const first = await client.responses.create({
    model,
    input: "Please call get_weather",
    tools: [WEATHER],
  });
  const call = first.output.find((item) => item.type === "function_call");
  if (!call) throw new Error(`${model}: no function call in ${JSON.stringify(first.output)}`);
  const { data: second, response } = await client.responses
    .create({
      model,
      previous_response_id: first.id,
      input: [{ type: "function_call_output", call_id: call.call_id, output: "Sunny, 21C" }],
      tools: [WEATHER],
    })
    .withResponse();
  return {
    first_id: first.id,
    call: { name: call.name, call_id: call.call_id, arguments: JSON.parse(call.arguments) },
    previous_response_id: second.previous_response_id,
    text: second.output_text,
    headers: oneflowHeaders(response),
  };
}

async function embeddings() {
  // The SDK asks for base64 unless told otherwise and decodes the vectors itself.
  const { data, response } = await client.embeddings
    .create({ model: EMBEDDING_MODEL, input: ["first text", "second text"] })
    .withResponse();
  const shorter = await client.embeddings.create({
    model: EMBEDDING_MODEL,
    input: "hello",
    dimensions: 256,
    encoding_format: "float",
  });
  const norm = Math.sqrt(data.data[0].embedding.reduce((sum, v) => sum + v * v, 0));
  return {
    count: data.data.length,
    indexes: data.data.map((item) => item.index),
    dimensions: data.data[0].embedding.length,
    norm,
    shorter_dimensions: shorter.data[0].embedding.length,
    usage: data.usage,
    headers: oneflowHeaders(response),
  };
}

/** A mono 16-bit PCM WAV of `seconds` of a 440 Hz tone: one second of samples, repeated (the
 * same bytes as tests/support/audio.py's `wav`). */
function wav(seconds, rate = 8000) {
  const frames = Math.round(seconds * rate);
  const second = Buffer.alloc(rate * 2);
  for (let i = 0; i < rate; i += 1) {
    second.writeInt16LE(Math.trunc(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write("RIFF", 0);
  header.writeUInt32LE(36 + frames * 2, 4);
  header.write("WAVEfmt ", 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36);
  header.writeUInt32LE(frames * 2, 40);
  const data = Buffer.concat(Array(Math.ceil(frames / rate)).fill(second)).subarray(0, frames * 2);
  return Buffer.concat([header, data]);
}

async function transcription() {
  const audio = wav(3);
  const { data, response } = await client.audio.transcriptions
    .create({
      model: TRANSCRIPTION_MODEL,
      file: await toFile(audio, "hello.wav", { type: "audio/wav" }),
    })
    .withResponse();
  return {
    text: data.text,
    audio_sha256: createHash("sha256").update(audio).digest("hex"),
    headers: oneflowHeaders(response),
  };
}

/** A bad request surfaces as the SDK's typed error with OpenAI's error body. */
async function unknownPreviousResponse() {
  try {
    await client.responses.create({
      model: CHAT_MODELS[0],
      input: "More",
      previous_response_id: "resp_does_not_exist",
    });
  } catch (error) {
    if (!(error instanceof OpenAI.APIError)) throw error;
    return { class: error.constructor.name, status: error.status, param: error.param };
  }
  throw new Error("an unknown previous_response_id was accepted");
}

const result = { sdk: VERSION, node: process.version, chat: {}, responses: {} };
for (const model of CHAT_MODELS) {
  result.chat[model] = { plain: await chatPlain(model), stream: await chatStreamed(model) };
  result.responses[model] = {
    plain: await responsePlain(model),
    stream: await responseStreamed(model),
    tool_round_trip: await toolRoundTrip(model),
  };
}
result.embeddings = await embeddings();
result.transcription = await transcription();
result.error = await unknownPreviousResponse();
console.log(JSON.stringify(result));

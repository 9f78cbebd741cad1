// Runs the official OpenAI Node SDK against glm-proxy and prints what the SDK made of each answer
// as one JSON object on stdout, for tests/e2e/test_clients.py to assert on.
//
//   node openai_client.mjs http://127.0.0.1:PORT/v1 [node-fetch|builtin]
//
// Every case is recorded, successes and SDK errors alike ({"error": {...}}); the script exits
// non-zero only if it could not run at all. Works on Node 18 (Debian 12's) and later; on Debian's
// 18.20.4+dfsg-1~deb12u3 the SDK's default transport (node-fetch 2) reports a false "Premature
// close" at the end of every chunked stream, from any server (node-fetch#1767), which is why the
// built-in fetch transport is offered too.
import OpenAI from 'openai';
import { VERSION } from 'openai/version';

const [baseURL, transport = 'node-fetch'] = process.argv.slice(2);
if (!baseURL || !['node-fetch', 'builtin'].includes(transport)) {
  console.error('usage: node openai_client.mjs BASE_URL [node-fetch|builtin]');
  process.exit(2);
}

// No retries: a retried request would hide the first answer, which is the one under test.
// Transport: the SDK's default on Node (node-fetch 2), or Node's built-in fetch (undici) through
// the SDK's documented `fetch` option.
const client = new OpenAI({
  baseURL,
  apiKey: 'sk-glm-proxy-test',
  maxRetries: 0,
  timeout: 30000,
  ...(transport === 'builtin' ? { fetch: globalThis.fetch } : {}),
});
const model = 'mock-model';

function describeError(e) {
  return {
    name: e?.constructor?.name ?? typeof e,
    status: e?.status ?? null,
    message: String(e?.message ?? e),
    type: e?.type ?? null,
    code: e?.code ?? null,
    isAPIError: e instanceof OpenAI.APIError,
  };
}

// Iterates an SDK stream, collecting the text of each chunk: the SDK parses each SSE event,
// stops at [DONE] and throws an APIError on a data: {"error": ...} event.
async function collect(stream, textOf) {
  const out = { chunks: 0, text: '', finishReasons: [], usage: null, completed: false };
  try {
    for await (const chunk of stream) {
      out.chunks += 1;
      for (const choice of chunk.choices ?? []) {
        out.text += textOf(choice) ?? '';
        if (choice.finish_reason) out.finishReasons.push(choice.finish_reason);
      }
      if (chunk.usage) out.usage = chunk.usage;
    }
    out.completed = true;
  } catch (e) {
    out.error = describeError(e);
  }
  return out;
}

const cases = {
  async completion() {
    const { data, response } = await client.completions
      .create({ model, prompt: 'Hello from the SDK', max_tokens: 5 })
      .withResponse();
    return {
      text: data.choices[0].text,
      finishReason: data.choices[0].finish_reason,
      usage: data.usage,
      requestId: response.headers.get('x-request-id'),
    };
  },

  async completionStream() {
    const stream = await client.completions.create({
      model,
      prompt: 'Hello from the SDK',
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    return collect(stream, (c) => c.text);
  },

  async chat() {
    const data = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Hello from the SDK' }],
      max_tokens: 4,
    });
    return {
      text: data.choices[0].message.content,
      role: data.choices[0].message.role,
      finishReason: data.choices[0].finish_reason,
      usage: data.usage,
    };
  },

  async chatStream() {
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Hello from the SDK' }],
      max_tokens: 7,
      stream: true,
      stream_options: { include_usage: true },
    });
    return collect(stream, (c) => c.delta?.content);
  },

  // The decoder refuses the request (400): the SDK must raise BadRequestError with the message.
  async decodeError() {
    await client.completions.create({ model, prompt: 'x', max_tokens: 4, mock_fault: 'decode_error' });
    return { unexpected: 'no error raised' };
  },

  // The decoder dies mid-stream: the proxy's error event must surface as an SDK exception after
  // the tokens that did arrive, never as a normal end of stream.
  async streamCut() {
    const stream = await client.completions.create({
      model,
      prompt: 'x',
      max_tokens: 8,
      stream: true,
      mock_fault: 'decode_cut',
    });
    return collect(stream, (c) => c.text);
  },

  async models() {
    const page = await client.models.list();
    return { ids: page.data.map((m) => m.id) };
  },
};

const results = { node: process.version, sdk: VERSION, transport };
for (const [name, run] of Object.entries(cases)) {
  try {
    results[name] = await run();
  } catch (e) {
    results[name] = { error: describeError(e) };
  }
}
process.stdout.write(JSON.stringify(results) + '\n');

import assert from "node:assert/strict";
import { summarizeProfile } from "./_cpu_profile.ts";

Deno.test("summarizeProfile() charges each sample to its part and to the function it was taken in", () => {
  const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber });
  const profile = {
    nodes: [
      { id: 1, callFrame: frame("(root)", ""), children: [2, 5, 6] },
      { id: 2, callFrame: frame("handler", "file:///app/lib/serving/handler.ts", 524), children: [3] },
      { id: 3, callFrame: frame("tokenize", "file:///app/lib/features/tokenizer.ts", 579), children: [4] },
      { id: 4, callFrame: frame("op_encode", "") },
      { id: 5, callFrame: frame("(idle)", "") },
      { id: 6, callFrame: frame("(garbage collector)", "") },
    ],
    // timeDeltas[i + 1] is the time of sample i.
    samples: [2, 3, 4, 4, 5, 6],
    timeDeltas: [0, 10, 20, 30, 40, 100, 5],
    startTime: 0,
    endTime: 205,
  };
  const summary = summarizeProfile(profile);
  assert.equal(summary.busyMicros, 105);
  assert.equal(summary.idleMicros, 100);
  assert.deepEqual(Object.fromEntries(summary.byCategory), {
    "handler (routing, response)": 10,
    // A runtime function called from the tokenizer counts as the tokenizer's.
    "model: tokenizer": 90,
    "garbage collection": 5,
  });
  assert.deepEqual(Object.fromEntries(summary.byFunction), {
    "handler (handler.ts:525)": 10,
    "tokenize (tokenizer.ts:580)": 20,
    "op_encode (native)": 70,
    "(garbage collector) (native)": 5,
  });
});

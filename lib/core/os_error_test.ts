import assert from "node:assert/strict";
import { describeFsError, FileSystemError, fsErrorCode } from "./os_error.ts";

function osError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

Deno.test("describeFsError() explains each file-system code on one line naming the path and the remedy", async (t) => {
  const cases: [string, Error, string, RegExp][] = [
    [
      "ENOSPC with the need",
      osError("ENOSPC", "No space left on device (os error 28)"),
      "data/raw/train.csv",
      /^no space left on the device holding data\/raw\/train\.csv \(needs about 1\.5 GB\); free space there, or move data\/ to a larger disk, then run again$/,
    ],
    [
      "EDQUOT",
      osError("EDQUOT", "Disk quota exceeded (os error 122)"),
      "data/batches/train_batch_0.csv",
      /^disk quota exceeded writing data\/batches\/train_batch_0\.csv \(needs about 1\.5 GB\); free space within your quota or ask for a larger one, then run again$/,
    ],
    [
      "EROFS",
      osError("EROFS", "Read-only file system (os error 30): open 'data/raw/x'"),
      "data/raw/x",
      /^data\/raw is on a read-only file system \(writing data\/raw\/x\); remount it read-write \(mount -o remount,rw <mount point>\)/,
    ],
    [
      "EACCES from the file system (not the sandbox)",
      new Deno.errors.PermissionDenied("Permission denied (os error 13)"),
      "/nonexistent-folder/x",
      /^permission denied by the file system on \/nonexistent-folder\/x; make \/nonexistent-folder writable for the user running the stage \(e\.g\. chown -R "\$\(id -u\)" \/nonexistent-folder\) or run the stage as its owner$/,
    ],
    [
      "EMFILE",
      osError("EMFILE", "Too many open files (os error 24)"),
      "data/processed/test.tsv",
      /^too many open files in this process while opening data\/processed\/test\.tsv; raise the limit \(ulimit -n 65536\) or run fewer stages at once$/,
    ],
  ];
  for (const [name, error, path, expected] of cases) {
    await t.step(name, async () => {
      const described = await describeFsError(error, { path, neededBytes: 1.5e9 });
      assert.ok(described instanceof FileSystemError);
      assert.match(described.message, expected);
      assert.equal(described.path, path);
      assert.equal(described.cause, error);
    });
  }
});

Deno.test("describeFsError() takes the path from Deno's message and leaves other errors alone", async () => {
  const error = osError("ENOSPC", "No space left on device (os error 28): writefile 'data/raw/a.csv'");
  assert.match(
    (await describeFsError(error))!.message,
    /^no space left on the device holding data\/raw\/a\.csv;/,
  );
  assert.equal(await describeFsError(new Deno.errors.NotFound("gone")), undefined);
  assert.equal(await describeFsError(new Deno.errors.NotCapable("sandbox")), undefined);
  assert.equal(await describeFsError("not an error"), undefined);
});

Deno.test("fsErrorCode() reads the code, or the OS error number of older messages", () => {
  assert.equal(fsErrorCode(osError("EROFS", "x")), "EROFS");
  assert.equal(fsErrorCode(new Error("Disk quota exceeded (os error 122)")), "EDQUOT");
  assert.equal(fsErrorCode(new Error("Too many open files (os error 24)")), "EMFILE");
  assert.equal(fsErrorCode(new Error("something else")), undefined);
});

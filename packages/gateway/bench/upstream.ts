// The bench's upstream, in its own process so it does not share an event loop with the load
// generator or the proxies: the CVAT-shaped fake from @sluice/test-support. Prints one JSON line
// ({ url, token }) when listening; exits on SIGTERM, SIGINT or when stdin closes.
import { startFakeCvat } from '../../../test/support/src/index.ts';

const cvat = await startFakeCvat({ blobBytes: 1024 * 1024 });
process.stdout.write(`${JSON.stringify({ url: cvat.url, token: cvat.token })}\n`);
const stop = (): void => {
  cvat.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();

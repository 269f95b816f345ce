// Sends events to Ops with the unmodified RudderStack and Segment Node SDKs,
// as their documentation shows, and exits 0 only when both flushed without
// an error. Env: OPS_URL (the data plane / host), WRITE_KEY, RUN (an id
// that tags the events).
'use strict';
const Rudder = require('@rudderstack/rudder-sdk-node');
const { Analytics } = require('@segment/analytics-node');

const url = process.env.OPS_URL;
const writeKey = process.env.WRITE_KEY;
const run = process.env.RUN;

async function rudder() {
  // Defaults kept: gzip on, and axios's content type for a Buffer body
  // (application/x-www-form-urlencoded), which is what RudderStack's own
  // gateway accepts.
  const client = new Rudder(writeKey, { dataPlaneUrl: url, flushAt: 100, flushInterval: 60000, logLevel: 'error' });
  await new Promise((resolve) => client.identify({ userId: `rudder-${run}`, traits: { plan: 'pro' } }, resolve));
  for (let i = 0; i < 3; i++) {
    client.track({ userId: `rudder-${run}`, event: 'Order Completed', properties: { run, i, sdk: 'rudder' } });
  }
  client.page({ userId: `rudder-${run}`, name: 'Pricing', properties: { run, sdk: 'rudder' } });
  await new Promise((resolve, reject) => client.flush((err) => (err ? reject(err) : resolve())));
}

async function segment() {
  const analytics = new Analytics({ writeKey, host: url, flushAt: 100, flushInterval: 60000, maxRetries: 0 });
  let failed = null;
  analytics.on('error', (err) => { failed = err; });
  analytics.identify({ userId: `segment-${run}`, traits: { plan: 'free' } });
  for (let i = 0; i < 3; i++) {
    analytics.track({ userId: `segment-${run}`, event: 'Order Completed', properties: { run, i, sdk: 'segment' } });
  }
  analytics.page({ userId: `segment-${run}`, name: 'Pricing', properties: { run, sdk: 'segment' } });
  await analytics.closeAndFlush({ timeout: 10000 });
  if (failed) throw failed;
}

(async () => {
  try {
    await rudder();
    await segment();
    console.log('ok');
  } catch (err) {
    console.error('sdk error:', err && (err.stack || err.message || err));
    process.exit(1);
  }
})();

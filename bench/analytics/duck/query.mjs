// The peer side of bench/analytics: loads the events the Go side wrote as
// CSV into DuckDB, makes visits as Ops does (a visitor's run of events with
// no gap over 30 minutes; a visit's source is its first event's), then
// times the dashboard's queries. Input on stdin, JSON:
//   {"csv": path, "from": iso, "to": iso, "runs": n, "filter": "Google"}
// Output on stdout, JSON: {"load_ms", "threads", "queries": {name: {"ms": [...], "result"}}}.
import { DuckDBInstance } from '@duckdb/node-api';
import { readFileSync } from 'node:fs';

const cfg = JSON.parse(readFileSync(0, 'utf8'));
const inst = await DuckDBInstance.create(':memory:');
const c = await inst.connect();
const run = async sql => (await c.runAndReadAll(sql)).getRowObjectsJson();

let t0 = performance.now();
await run(`CREATE TABLE raw AS SELECT * FROM read_csv('${cfg.csv}', header = true,
  columns = {'ts': 'TIMESTAMP', 'visitor': 'VARCHAR', 'page': 'VARCHAR', 'source': 'VARCHAR', 'browser': 'VARCHAR', 'country': 'VARCHAR'})`);
// Visits: a new one after 30 minutes of silence; its source, browser and
// country are its first event's, as Ops keeps them.
await run(`CREATE TABLE ev AS
  WITH g AS (SELECT *, CASE WHEN ts - lag(ts) OVER w <= INTERVAL 30 MINUTE THEN 0 ELSE 1 END AS starts FROM raw WINDOW w AS (PARTITION BY visitor ORDER BY ts)),
       s AS (SELECT *, sum(starts) OVER (PARTITION BY visitor ORDER BY ts ROWS UNBOUNDED PRECEDING) AS visit FROM g)
  SELECT ts, visitor, page, visit,
    first_value(ts) OVER v AS vstart, first_value(source) OVER v AS vsource, first_value(browser) OVER v AS vbrowser, first_value(country) OVER v AS vcountry
  FROM s WINDOW v AS (PARTITION BY visitor, visit ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)`);
await run(`CREATE TABLE visits AS SELECT visitor, visit, min(ts) AS vstart, max(ts) AS vend, count(*) AS views,
  any_value(vsource) AS vsource, any_value(vbrowser) AS vbrowser FROM ev GROUP BY visitor, visit`);
await run('DROP TABLE raw');
const loadMs = performance.now() - t0;

const range = `ts >= TIMESTAMP '${cfg.from}' AND ts < TIMESTAMP '${cfg.to}'`;
const vrange = `vstart >= TIMESTAMP '${cfg.from}' AND vstart < TIMESTAMP '${cfg.to}'`;
const queries = {};
for (const [suffix, f] of [['', ''], [' (filtered)', ` AND vsource = '${cfg.filter}'`]]) {
  queries['aggregate' + suffix] = `SELECT
      (SELECT count(DISTINCT visitor) FROM ev WHERE ${range}${f}) AS visitors,
      (SELECT count(*) FROM ev WHERE ${range}${f}) AS pageviews,
      (SELECT count(*) FROM visits WHERE ${vrange}${f}) AS visits,
      (SELECT round(100.0 * count(*) FILTER (WHERE views = 1) / count(*), 1) FROM visits WHERE ${vrange}${f}) AS bounce_rate`;
  queries['timeseries' + suffix] = `SELECT date_trunc('day', ts) AS day, count(DISTINCT visitor) AS visitors, count(*) AS pageviews
      FROM ev WHERE ${range}${f} GROUP BY day ORDER BY day`;
  queries['top pages' + suffix] = `SELECT page AS value, count(DISTINCT visitor) AS visitors, count(*) AS pageviews
      FROM ev WHERE ${range}${f} GROUP BY page ORDER BY visitors DESC, value LIMIT 10`;
  queries['top sources' + suffix] = `SELECT vsource AS value, count(DISTINCT visitor) AS visitors
      FROM ev WHERE ${range}${f} GROUP BY vsource ORDER BY visitors DESC, value LIMIT 10`;
  queries['browsers' + suffix] = `SELECT vbrowser AS value, count(DISTINCT visitor) AS visitors
      FROM ev WHERE ${range}${f} GROUP BY vbrowser ORDER BY visitors DESC, value LIMIT 10`;
}
const out = { load_ms: loadMs, threads: (await run("SELECT current_setting('threads') AS t"))[0].t, queries: {} };
for (const [name, sql] of Object.entries(queries)) {
  const ms = [];
  let result;
  for (let i = 0; i < cfg.runs; i++) {
    t0 = performance.now();
    result = await run(sql);
    ms.push(performance.now() - t0);
  }
  out.queries[name] = { ms, result };
}
process.stdout.write(JSON.stringify(out));

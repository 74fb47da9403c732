// The web UI as a person uses it, in a real browser: Debian's Chromium, driven by the npm
// package playwright-core (both installed by scripts/install-test-deps.sh; playwright-core in
// target/browser-test, found through NODE_PATH). Logs in (a wrong password first), unpauses and
// triggers example_dag from the pipelines list, waits for the run to succeed, checks the
// pipeline page's grid and graph, reads the print_date task's log. Then the repair flow: the
// variable example_dag_fail set to yes makes a run fail; the operator picks it in the grid, reads
// print_date's log and rendered command, deletes the variable, clears print_date with its
// downstream (previewed, then confirmed), and the run succeeds. Checks that no page broke the
// Content-Security-Policy, and logs out with the nav's button (a POST).
//
// Prints one line per step (`ok   <step>: <detail>`); stops at the first failure with
// `FAIL <step>: <message>` and exit code 1, after saving failure.png (2 for usage errors).
// Saves login.png, pipelines.png, pipeline.png, task.png, failed-run.png, failed-task.png,
// clear-preview.png and repaired-run.png along the way. Run by
// tests/browser.rs against `sluice standalone`:
//
//     NODE_PATH=target/browser-test/node_modules node tests/browser/ui.mjs \
//         --url http://127.0.0.1:8080 --user admin --password secret --screenshots /tmp/shots
//
// The selectors are the web UI's markup contract: ids, `data-*` attributes and a few classes,
// never layout or wording (except the log line the task itself prints).

import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';

const HINT = 'run scripts/install-test-deps.sh';
const DAG_ID = 'example_dag';
const TASKS = ['print_hello', 'print_date'];
// What print_date echoes with the default `greeting` param, then its `ds`. A whole line, so the
// echoed command (`... echo 'Hello from Sluice on 2024-01-01'`), which a log may show first, does
// not count: only the command's output does.
const LOG_TEXT = 'Hello from Sluice on';
const LOG_LINE = /Hello from Sluice on \d{4}-\d{2}-\d{2}$/;
const RUN_TIMEOUT_MS = 60_000;
// The variable that makes example_dag's print_date fail while it is `yes`.
const SWITCH = 'example_dag_fail';
const POLL_MS = 1_000;
// How long one action or wait for an element may take before the step fails.
const ACTION_TIMEOUT_MS = 15_000;
// States after which a run changes no more.
const FINISHED = new Set(['success', 'failed']);

class Failure extends Error {}

function expect(condition, message) {
    if (!condition) {
        throw new Failure(message);
    }
}

// --- arguments and setup --------------------------------------------------------------------

function usage(message) {
    console.error(`ui.mjs: ${message}`);
    console.error('usage: node ui.mjs --url URL --user USER --password PASSWORD --screenshots DIR [--chromium PATH]');
    process.exit(2);
}

function parseArguments() {
    let values;
    try {
        ({ values } = parseArgs({
            options: {
                url: { type: 'string' },
                user: { type: 'string' },
                password: { type: 'string' },
                screenshots: { type: 'string' },
                chromium: { type: 'string', default: '/usr/bin/chromium' },
            },
            strict: true,
        }));
    } catch (error) {
        usage(error.message);
    }
    for (const name of ['url', 'user', 'password', 'screenshots']) {
        if (!values[name]) {
            usage(`--${name} is required`);
        }
    }
    return { ...values, url: values.url.replace(/\/+$/, '') };
}

// playwright-core, resolved like `require` from here: through NODE_PATH (which tests/browser.rs
// points at target/browser-test/node_modules) or a node_modules above this file.
function loadPlaywright() {
    const require = createRequire(import.meta.url);
    try {
        return { chromium: require('playwright-core').chromium, version: require('playwright-core/package.json').version };
    } catch (error) {
        const where = process.env.NODE_PATH ? `NODE_PATH=${process.env.NODE_PATH}` : 'NODE_PATH unset';
        console.log(`FAIL browser: cannot load playwright-core (${oneLine(error.message)}; ${where}): ${HINT}`);
        process.exit(1);
    }
}

// --- the run of steps -------------------------------------------------------------------------

const args = parseArguments();
const playwright = loadPlaywright();
mkdirSync(args.screenshots, { recursive: true });
// What the steps share: the browser, the page, and what earlier steps saw.
const session = {
    browser: null,
    page: null,
    pageErrors: [],
    cspViolations: [],
    runsBefore: 0,
    runIdsBefore: new Set(),
    runId: null,
    repairRunId: null,
};

await step('browser', launch);
await step('wrong password', wrongPassword);
await step('login', login);
await step('pipelines', pipelinesList);
await step('unpause', unpause);
await step('trigger', trigger);
await step('run', waitForRun);
await step('pipeline page', pipelinePage);
await step('task instance', taskInstance);
// The repair flow: a run fails, the operator reads the log, fixes the cause, clears the failed
// task with its downstream (previewed, then confirmed), and the run succeeds.
await step('failure switch on', failureSwitchOn);
await step('failed run', failedRun);
await step('read the failure', readFailure);
await step('fix the cause', failureSwitchOff);
await step('clear with downstream', clearWithDownstream);
await step('repaired run', repairedRun);
await step('content security policy', contentSecurityPolicy);
await step('logout', logout);
console.log('ok   all checks passed');
await session.browser.close();

// Runs one step and prints its line; on failure prints FAIL (one line), saves failure.png and
// exits 1.
async function step(name, check) {
    let detail;
    try {
        detail = await check();
    } catch (error) {
        await fail(name, error);
    }
    console.log(`ok   ${name}: ${detail}`);
}

async function fail(name, error) {
    // Playwright's messages carry a multi-line call log (which selector it waited for): keep it,
    // on one line, as every other line.
    let message = error instanceof Failure ? error.message : `${error.name}: ${error.message}`;
    const page = session.page;
    if (page) {
        message += ` [page ${page.url()}`;
        const text = await page
            .locator('body')
            .innerText({ timeout: 2_000 })
            .catch(() => null);
        if (text !== null) {
            message += `, text: "${clip(oneLine(text), 300)}"`;
        }
        const shot = path.join(args.screenshots, 'failure.png');
        const saved = await page
            .screenshot({ path: shot, fullPage: true, timeout: 5_000 })
            .then(() => true)
            .catch(() => false);
        message += saved ? `, screenshot ${shot}]` : ', no screenshot]';
    }
    if (session.pageErrors.length > 0) {
        message += ` JavaScript errors on the pages: ${session.pageErrors.join(' | ')}`;
    }
    console.log(`FAIL ${name}: ${clip(oneLine(message), 2_000)}`);
    await session.browser?.close().catch(() => {});
    process.exit(1);
}

// --- the steps, in order; each returns the detail of its `ok` line ------------------------------

async function launch() {
    session.browser = await playwright.chromium
        .launch({
            executablePath: args.chromium,
            headless: true,
            // Root in a container has no user namespace for Chromium's sandbox; /dev/shm may be tiny.
            args: ['--no-sandbox', '--disable-dev-shm-usage'],
        })
        .catch((error) => {
            throw new Failure(`cannot start ${args.chromium}: ${firstLine(error.message)}; ${HINT}`);
        });
    const context = await session.browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    session.page = await context.newPage();
    session.page.on('pageerror', (error) => session.pageErrors.push(firstLine(error.message)));
    // Chromium reports what the Content-Security-Policy blocked on the console.
    session.page.on('console', (message) => {
        if (/Content Security Policy/i.test(message.text())) {
            session.cspViolations.push(firstLine(message.text()));
        }
    });
    return `playwright-core ${playwright.version} driving Chromium ${session.browser.version()} (${args.chromium})`;
}

async function wrongPassword() {
    const page = session.page;
    await open('/login');
    const form = page.locator('form#login');
    await form.waitFor();
    const method = await form.getAttribute('method');
    const action = await form.getAttribute('action');
    expect(method?.toLowerCase() === 'post', `form#login has method="${method}", expected "post"`);
    expect(action === '/login', `form#login has action="${action}", expected "/login"`);
    await form.locator('input[name=username]').fill(args.user);
    await form.locator('input[name=password]').fill(`${args.password}-wrong`);
    // A refused login may answer 200 or 4xx: what counts is the form again, with `.error`.
    await submit(form.locator('button[type=submit]'), { anyStatus: true });
    const error = page.locator('.error').first();
    await error.waitFor().catch(() => {
        throw new Failure('no `.error` after a wrong password');
    });
    await page.locator('form#login').waitFor();
    expect(pathOf(page) === '/login', `a wrong password led to ${pathOf(page)}, not back to /login`);
    await screenshot('login.png');
    return `form#login shown again with .error "${clip(oneLine(await error.innerText()), 80)}"`;
}

async function login() {
    const page = session.page;
    const form = page.locator('form#login');
    await form.locator('input[name=username]').fill(args.user);
    await form.locator('input[name=password]').fill(args.password);
    await submit(form.locator('button[type=submit]'));
    expect(pathOf(page) === '/', `logging in led to ${pathOf(page)}, not /`);
    await page.locator('nav form[action="/logout"] button#logout').first().waitFor();
    const whoami = oneLine(await page.locator('#whoami').innerText());
    expect(whoami.includes(args.user), `#whoami says "${whoami}", not the user ${args.user}`);
    return `redirected to /, #whoami "${whoami}", nav has the Log out button`;
}

// Every page so far rendered under the server's Content-Security-Policy: nothing was blocked, and
// the stylesheet (a file, not inline) applies.
async function contentSecurityPolicy() {
    expect(session.cspViolations.length === 0, `blocked by the policy: ${session.cspViolations.join(' | ')}`);
    const background = await session.page.locator('nav').first().evaluate((nav) => getComputedStyle(nav).backgroundColor);
    expect(background === 'rgb(1, 124, 238)', `the nav's background is ${background}: /static/sluice.css did not apply`);
    return `no violation on any page; the stylesheet applies (nav ${background})`;
}

// The nav's Log out button posts the form with the CSRF token; afterwards / asks to sign in.
async function logout() {
    const page = session.page;
    await submit(page.locator('nav form[action="/logout"] button#logout').first());
    expect(pathOf(page) === '/login', `logging out led to ${pathOf(page)}, not /login`);
    await open('/');
    expect(pathOf(page) === '/login', `after logging out, / showed ${pathOf(page)}, not /login`);
    return 'back at /login, and / asks to sign in again';
}

async function pipelinesList() {
    const page = session.page;
    await page.locator('table#pipelines').waitFor();
    const ids = await page.locator('table#pipelines tr[data-dag-id]').evaluateAll((rows) => rows.map((r) => r.dataset.dagId));
    expect(ids.includes(DAG_ID), `no tr[data-dag-id="${DAG_ID}"] in table#pipelines (rows: ${ids.join(', ') || 'none'})`);
    const row = dagRow();
    const href = await row.locator('a.dag-link').first().getAttribute('href');
    expect(href !== null && new URL(href, page.url()).pathname === `/dags/${DAG_ID}`, `a.dag-link goes to ${href}, not /dags/${DAG_ID}`);
    session.runsBefore = (await runStates()).length;
    const paused = (await row.locator('button[data-action="unpause"]').count()) > 0;
    return `${ids.length} pipeline(s): ${ids.join(', ')}; ${DAG_ID} ${paused ? 'paused' : 'not paused'}, ${session.runsBefore} run(s)`;
}

async function unpause() {
    const row = dagRow();
    const button = row.locator('button[data-action="unpause"]');
    expect((await button.count()) === 1, `${DAG_ID} shows no button[data-action="unpause"] (it is created paused)`);
    await submit(button);
    await backToList();
    await dagRow().locator('button[data-action="pause"]').waitFor().catch(() => {
        throw new Failure(`after unpausing, ${DAG_ID} shows no button[data-action="pause"]`);
    });
    expect((await dagRow().locator('button[data-action="unpause"]').count()) === 0, `${DAG_ID} still shows the unpause button`);
    return `${DAG_ID} now shows button[data-action="pause"]`;
}

async function trigger() {
    // The run ids the pipeline page knows now, so the run this step starts can be told apart.
    await open(`/dags/${DAG_ID}`);
    session.runIdsBefore = new Set(await gridCells().then((cells) => cells.map((c) => c.runId)));
    await backToList();
    await submit(dagRow().locator('button[data-action="trigger"]'));
    const landed = pathOf(session.page);
    await backToList();
    return `posted from the pipelines list, answered with ${landed}`;
}

async function waitForRun() {
    const started = Date.now();
    const seen = [];
    let states = [];
    for (;;) {
        states = await runStates();
        if (states.length > session.runsBefore) {
            const newest = states[0];
            if (seen.at(-1) !== newest) {
                seen.push(newest);
            }
            if (newest === 'success') {
                break;
            }
            expect(!FINISHED.has(newest), `the newest run of ${DAG_ID} ended ${newest} (states seen: ${seen.join(' -> ')})`);
        }
        expect(
            Date.now() - started < RUN_TIMEOUT_MS,
            `no successful run of ${DAG_ID} within ${RUN_TIMEOUT_MS / 1000} s: ` +
                (seen.length ? `states seen: ${seen.join(' -> ')}` : `still ${states.length} span.run-state, as before the trigger`),
        );
        await sleep(POLL_MS);
        await reload();
    }
    await screenshot('pipelines.png');
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    return `newest span.run-state is success after ${seconds} s (${seen.join(' -> ')}); ${states.length} run(s) listed`;
}

async function pipelinePage() {
    const page = session.page;
    await navigate(() => dagRow().locator('a.dag-link').first().click(), (url) => url.pathname === `/dags/${DAG_ID}`);
    await page.locator('table#grid').waitFor();
    const cells = await gridCells();
    const newRuns = [...new Set(cells.map((c) => c.runId))].filter((id) => !session.runIdsBefore.has(id));
    expect(newRuns.length === 1, `expected one new run in table#grid, found ${newRuns.length}: ${newRuns.join(', ')}`);
    const runId = newRuns[0];
    session.runId = runId;
    const ours = cells.filter((c) => c.runId === runId);
    const tasks = ours.map((c) => c.taskId).sort();
    expect(sameSet(tasks, TASKS), `run ${runId} has td.ti for [${tasks.join(', ')}], expected one each for [${TASKS.join(', ')}]`);
    const notDone = ours.filter((c) => c.state !== 'success');
    expect(notDone.length === 0, `run ${runId}: ${notDone.map((c) => `${c.taskId} is ${c.state}`).join(', ')}`);
    const unlinked = ours.filter((c) => !c.linked);
    expect(unlinked.length === 0, `run ${runId}: no a.ti-link in the cell of ${unlinked.map((c) => c.taskId).join(', ')}`);

    const nodes = await settled(() =>
        page
            .locator('svg#graph g.node[data-task-id]')
            .evaluateAll((gs) => gs.map((g) => ({ taskId: g.dataset.taskId, state: g.dataset.state ?? null }))),
    );
    const nodeIds = nodes.map((n) => n.taskId).sort();
    expect(sameSet(nodeIds, TASKS), `svg#graph has g.node for [${nodeIds.join(', ')}], expected one each for [${TASKS.join(', ')}]`);
    const missingState = nodes.filter((n) => n.state === null);
    expect(missingState.length === 0, `g.node without data-state: ${missingState.map((n) => n.taskId).join(', ')}`);
    await screenshot('pipeline.png');
    const graph = nodes.map((n) => `${n.taskId}=${n.state}`).join(', ');
    return `run ${runId}: ${ours.length} td.ti, all success; svg#graph nodes ${graph}`;
}

async function taskInstance() {
    const page = session.page;
    const cell = `td.ti[data-task-id="print_date"][data-run-id=${cssString(session.runId)}]`;
    const from = pathOf(page);
    await navigate(() => page.locator(`${cell} a.ti-link`).first().click(), (url) => url.pathname !== from);
    const log = page.locator('pre#log');
    await log.waitFor();
    const text = await log.innerText();
    const line = text.split('\n').find((l) => LOG_LINE.test(l.trimEnd()));
    expect(line !== undefined, `no line of pre#log ends with "${LOG_TEXT} <ds>": "${clip(oneLine(text), 300)}"`);
    for (const action of ['clear', 'mark-success', 'mark-failed']) {
        expect((await page.locator(`button[data-action="${action}"]`).count()) > 0, `no button[data-action="${action}"]`);
    }
    const rendered = (await page.locator('dl#rendered').innerText()).trim();
    expect(rendered.includes('the shell command') && rendered.includes(LOG_TEXT),
        `dl#rendered does not show the rendered command: "${clip(oneLine(rendered), 200)}"`);
    await screenshot('task.png');
    return `${pathOf(page)}: pre#log has "${clip(line.trim(), 120)}"; rendered command shown; clear, mark-success and mark-failed buttons`;
}

// --- page helpers -----------------------------------------------------------------------------

// --- the repair flow ----------------------------------------------------------------------------

async function failureSwitchOn() {
    const page = session.page;
    await open('/variables');
    const form = page.locator('form#create');
    await form.locator('input[name="key"]').fill(SWITCH);
    await form.locator('input[name="value"]').fill('yes');
    await submit(form.locator('button[data-action="create"]'));
    await page.locator(`table#variables tr[data-id="${SWITCH}"]`).waitFor();
    return `variable ${SWITCH} = yes, set from /variables`;
}

// The run states of the pipeline page's grid, by run id.
async function gridRuns() {
    return settled(() =>
        session.page
            .locator('table#grid a.run-state[data-run-id]')
            .evaluateAll((links) => Object.fromEntries(links.map((a) => [a.dataset.runId, a.dataset.state]))),
    );
}

async function failedRun() {
    const page = session.page;
    await open(`/dags/${DAG_ID}`);
    const before = new Set(Object.keys(await gridRuns()));
    await submit(page.locator('form#trigger button[data-action="trigger"]'));
    await open(`/dags/${DAG_ID}`);
    const fresh = Object.keys(await gridRuns()).filter((id) => !before.has(id));
    expect(fresh.length === 1, `expected one new run in table#grid, found ${fresh.length}`);
    session.repairRunId = fresh[0];
    const started = Date.now();
    const seen = [];
    for (;;) {
        const state = (await gridRuns())[session.repairRunId];
        if (seen.at(-1) !== state) {
            seen.push(state);
        }
        if (state === 'failed') {
            break;
        }
        expect(state !== 'success', `run ${session.repairRunId} succeeded with ${SWITCH}=yes (${seen.join(' -> ')})`);
        expect(Date.now() - started < RUN_TIMEOUT_MS, `run ${session.repairRunId} not failed within ${RUN_TIMEOUT_MS / 1000} s: ${seen.join(' -> ')}`);
        await sleep(POLL_MS);
        await open(`/dags/${DAG_ID}?run=${encodeURIComponent(session.repairRunId)}`);
    }
    await open(`/dags/${DAG_ID}?run=${encodeURIComponent(session.repairRunId)}`);
    await page.locator(`section#run[data-run-id=${cssString(session.repairRunId)}]`).waitFor();
    await screenshot('failed-run.png');
    return `run ${session.repairRunId}: ${seen.join(' -> ')} in ${((Date.now() - started) / 1000).toFixed(1)} s`;
}

async function readFailure() {
    const page = session.page;
    const cell = `td.ti[data-task-id="print_date"][data-run-id=${cssString(session.repairRunId)}]`;
    const state = await page.locator(cell).getAttribute('data-state');
    expect(state === 'failed', `print_date of ${session.repairRunId} is ${state}, not failed`);
    const from = pathOf(page);
    await navigate(() => page.locator(`${cell} a.ti-link`).first().click(), (url) => url.pathname !== from);
    await page.locator('pre#log').waitFor();
    const rendered = (await page.locator('dl#rendered').innerText()).trim();
    expect(rendered.includes("test 'yes' != yes"), `the rendered command does not show the switch: "${clip(oneLine(rendered), 200)}"`);
    const log = await page.locator('pre#log').innerText();
    expect(log.includes("test 'yes' != yes"), `pre#log does not show the command that failed: "${clip(oneLine(log), 300)}"`);
    const tries = await page.locator('p#tries a[data-try]').count();
    await screenshot('failed-task.png');
    return `${pathOf(page)}: ${tries} tries, rendered command shows test 'yes' != yes; ${log.split('\n').length} log line(s)`;
}

async function failureSwitchOff() {
    const page = session.page;
    const taskPage = page.url();
    await open('/variables');
    await submit(page.locator(`table#variables tr[data-id="${SWITCH}"] button[data-action="delete"]`));
    expect((await page.locator(`table#variables tr[data-id="${SWITCH}"]`).count()) === 0, `${SWITCH} is still listed`);
    await open(new URL(taskPage).pathname);
    return `variable ${SWITCH} deleted from /variables`;
}

async function clearWithDownstream() {
    const page = session.page;
    const form = page.locator('form#clear');
    expect(await form.locator('input[name="downstream"]').isChecked(), 'the clear form does not reach downstream by default');
    await submit(form.locator('button[data-action="clear"]'));
    const listed = await page.locator('ul#to-clear li[data-task-id]').evaluateAll((lis) => lis.map((li) => li.dataset.taskId));
    expect(sameSet(listed, ['print_date']), `the preview lists [${listed.join(', ')}], expected [print_date]`);
    await screenshot('clear-preview.png');
    await submit(page.locator('button[data-action="confirm-clear"]'));
    return `previewed [${listed.join(', ')}], confirmed; back on ${pathOf(page)}`;
}

async function repairedRun() {
    const page = session.page;
    const target = `/dags/${DAG_ID}?run=${encodeURIComponent(session.repairRunId)}`;
    const started = Date.now();
    const seen = [];
    for (;;) {
        await open(target);
        const state = (await gridRuns())[session.repairRunId];
        if (seen.at(-1) !== state) {
            seen.push(state);
        }
        if (state === 'success') {
            break;
        }
        expect(state !== 'failed', `run ${session.repairRunId} is still or again failed (${seen.join(' -> ')})`);
        expect(Date.now() - started < RUN_TIMEOUT_MS, `run ${session.repairRunId} not repaired within ${RUN_TIMEOUT_MS / 1000} s: ${seen.join(' -> ')}`);
        await sleep(POLL_MS);
    }
    const cells = (await gridCells()).filter((c) => c.runId === session.repairRunId);
    const notDone = cells.filter((c) => c.state !== 'success');
    expect(notDone.length === 0, `after the repair: ${notDone.map((c) => `${c.taskId} is ${c.state}`).join(', ')}`);
    await screenshot('repaired-run.png');
    return `run ${session.repairRunId}: ${seen.join(' -> ')}; every task success`;
}

function dagRow() {
    return session.page.locator(`table#pipelines tr[data-dag-id="${DAG_ID}"]`);
}

// The states of example_dag's recent runs on the pipelines list, newest first.
async function runStates() {
    await dagRow().waitFor();
    return settled(() => dagRow().locator('span.run-state').evaluateAll((spans) => spans.map((s) => s.dataset.state ?? '(no data-state)')));
}

// Every `td.ti` of table#grid (none when the page has no grid yet).
async function gridCells() {
    return settled(() =>
        session.page.locator('table#grid td.ti').evaluateAll((tds) =>
            tds.map((td) => ({
                taskId: td.dataset.taskId,
                runId: td.dataset.runId,
                state: td.dataset.state,
                linked: td.querySelector('a.ti-link') !== null,
            })),
        ),
    );
}

async function open(target) {
    const response = await session.page.goto(`${args.url}${target}`, { waitUntil: 'load' }).catch((error) => {
        // Chromium refuses to show some error answers (an empty 404) and the server may be gone.
        throw new Failure(`GET ${target}: ${firstLine(error.message)}`);
    });
    expectOk(response, `GET ${target}`);
}

async function reload() {
    const response = await session.page.reload({ waitUntil: 'load' });
    expectOk(response, `reloading ${pathOf(session.page)}`);
}

async function backToList() {
    if (pathOf(session.page) !== '/') {
        await open('/');
    }
}

// Clicks a form's submit button and waits for the page the server answers with (after any
// redirect): a form post navigates, possibly to the same URL, so wait for the navigation
// itself, not for a URL.
async function submit(button, { anyStatus = false } = {}) {
    const page = session.page;
    const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), button.click()]);
    if (!anyStatus) {
        expectOk(response, `submitting from ${pathOf(page)}`);
    }
}

// Clicks a link and waits until the page's URL satisfies `arrived` (a reload the pipeline page
// does by itself does not count).
async function navigate(click, arrived) {
    const page = session.page;
    await Promise.all([page.waitForURL(arrived, { waitUntil: 'load' }), click()]);
}

function expectOk(response, what) {
    // null: same-document navigation (only an anchor change), nothing to check.
    if (response !== null) {
        expect(response.ok(), `${what} answered HTTP ${response.status()} ${response.statusText()}`);
    }
}

// Runs a read of the page again when a navigation (the pipeline page reloads itself while a run
// is active) destroyed the document it was reading.
async function settled(read) {
    for (let attempt = 1; ; attempt++) {
        try {
            return await read();
        } catch (error) {
            const navigated = /Execution context was destroyed|navigation|Target closed/i.test(error.message);
            if (!navigated || attempt >= 5) {
                throw error;
            }
            await session.page.waitForLoadState('load');
        }
    }
}

async function screenshot(name) {
    await session.page.screenshot({ path: path.join(args.screenshots, name), fullPage: true });
}

// --- small helpers ----------------------------------------------------------------------------

function pathOf(page) {
    return new URL(page.url()).pathname;
}

// A CSS string literal (for run ids such as `manual__2024-01-01T00:00:00+00:00`).
function cssString(text) {
    return `"${String(text).replace(/["\\]/g, '\\$&').replace(/\n/g, '\\a ')}"`;
}

function sameSet(actual, expected) {
    const [a, b] = [[...actual].sort(), [...expected].sort()];
    return a.length === b.length && a.every((v, i) => v === b[i]);
}

// Also drops the terminal colours Playwright puts in its call logs.
function oneLine(text) {
    return String(text)
        .replace(/\x1b\[[0-9;]*m/g, '')
        .split(/\s+/)
        .filter(Boolean)
        .join(' ');
}

function firstLine(text) {
    return String(text).split('\n')[0];
}

function clip(text, max) {
    return text.length > max ? `${text.slice(0, max)}...` : text;
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

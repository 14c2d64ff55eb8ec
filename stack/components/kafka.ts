import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { logLevel } from 'kafkajs';
import { projectRoot, type Config } from '../../lib/config.ts';
import { describeTopic, ensureTopic, idempotentProducer, kafkaClient } from '../../lib/kafka.ts';
import type { Component, ComponentStatus } from '../component.ts';
import { aptInstall, commandExists, isAlive, log, portOpen, readPid, run, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';

const NAME = 'kafka';
const pom = path.join(projectRoot, 'stack', 'kafka', 'pom.xml');
const kafkaHome = (): string => statePath('kafka');
const libsDir = (): string => path.join(kafkaHome(), 'libs');
const stampFile = (): string => path.join(libsDir(), '.marquee-stamp');
const classpath = (): string => path.join(libsDir(), '*');

function brokerAddress(cfg: Config): { host: string; port: number } {
  const [host, port] = cfg.kafka.brokers[0].split(':');
  return { host, port: Number(port) };
}

/** The controller listens next to the broker (9093 for the default 9092) so one setting moves both. */
const controllerPort = (cfg: Config): number => brokerAddress(cfg).port + 1;

/** The libs are rebuilt when the pom changes (e.g. a Kafka patch bump), not just when they are missing. */
const pomHash = (): string => createHash('sha256').update(readFileSync(pom)).digest('hex');

function installLibs(): void {
  if (existsSync(stampFile()) && readFileSync(stampFile(), 'utf8').trim() === pomHash()) return;
  if (!commandExists('java')) aptInstall(NAME, ['openjdk-17-jre-headless']);
  if (!commandExists('mvn')) aptInstall(NAME, ['maven']);
  // Start from an empty folder so that an old version's jars never share the classpath with new ones.
  rmSync(libsDir(), { recursive: true, force: true });
  mkdirSync(libsDir(), { recursive: true });
  log(NAME, 'fetching the Kafka jars from Maven Central (mvn dependency:copy-dependencies)');
  run('mvn', ['-q', '-B', '-f', pom, `-Dkafka.libs=${libsDir()}`, 'package'], { cwd: projectRoot });
  // A pom that resolved but copied nothing useful must not leave a stamp behind.
  if (!readdirSync(libsDir()).some((f) => /^kafka_2\.13-.*\.jar$/.test(f))) throw new Error(`mvn copied no kafka_2.13 jar into ${libsDir()}`);
  writeFileSync(stampFile(), pomHash() + '\n');
}

function serverProperties(cfg: Config): string {
  const { host, port } = brokerAddress(cfg);
  const cport = controllerPort(cfg);
  return [
    '# Written by stack/components/kafka.ts on every start; edit that file, not this one.',
    '# One KRaft node that is both broker and controller: the whole local cluster.',
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@${host}:${cport}`,
    `listeners=PLAINTEXT://${host}:${port},CONTROLLER://${host}:${cport}`,
    `advertised.listeners=PLAINTEXT://${host}:${port}`,
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${path.join(kafkaHome(), 'data')}`,
    // A single node cannot hold more than one replica of the internal topics.
    'offsets.topic.replication.factor=1',
    // Fewer internal partitions than the defaults (50) make their first creation take well under a
    // second on two cores; a single node gains nothing from more coordinator shards.
    'offsets.topic.num.partitions=8',
    'transaction.state.log.num.partitions=4',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    `num.partitions=${cfg.kafka.partitions}`,
    // Consumers in tests and the ingest join once; waiting 3 s for more members only slows them down.
    'group.initial.rebalance.delay.ms=0',
    // Topics are created up front with the configured partition count; a typo must not make a new one.
    'auto.create.topics.enable=false',
    '',
  ].join('\n');
}

/** The broker's own chatter goes to a rolling file; stdout (the daemon log) only gets warnings. */
function log4jProperties(): string {
  const file = statePath('logs', 'kafka-server.log');
  return [
    'log4j.rootLogger=INFO, file, stdout',
    'log4j.appender.file=org.apache.log4j.RollingFileAppender',
    `log4j.appender.file.File=${file}`,
    'log4j.appender.file.MaxFileSize=50MB',
    'log4j.appender.file.MaxBackupIndex=2',
    'log4j.appender.file.layout=org.apache.log4j.PatternLayout',
    'log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n',
    'log4j.appender.stdout=org.apache.log4j.ConsoleAppender',
    'log4j.appender.stdout.Threshold=WARN',
    'log4j.appender.stdout.layout=org.apache.log4j.PatternLayout',
    'log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n',
    // Per-request logging is only useful when debugging the wire protocol.
    'log4j.logger.kafka.request.logger=WARN',
    'log4j.logger.org.apache.kafka.clients.NetworkClient=WARN',
    '',
  ].join('\n');
}

function javaArgs(): string[] {
  return [
    `-Dlog4j.configuration=file:${path.join(kafkaHome(), 'log4j.properties')}`,
    `-Dkafka.logs.dir=${statePath('logs')}`,
    '-Djava.awt.headless=true',
  ];
}

/**
 * Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (as `random-uuid`
 * prints); like Kafka's own Uuid.randomUuid, never one that starts with '-' (1 in 64 would).
 */
function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** Formats the KRaft storage once; the cluster id is kept so that a re-format (data wiped) reuses it. */
function formatStorage(): void {
  if (existsSync(path.join(kafkaHome(), 'data', 'meta.properties'))) return;
  const idFile = path.join(kafkaHome(), 'cluster-id');
  // An id starting with '-' is read as a flag by the storage tool (and never formatted, so it can be replaced).
  if (!existsSync(idFile) || readFileSync(idFile, 'utf8').startsWith('-')) writeFileSync(idFile, newClusterId() + '\n');
  const clusterId = readFileSync(idFile, 'utf8').trim();
  log(NAME, `formatting the KRaft storage (cluster ${clusterId})`);
  run('java', [...javaArgs(), '-cp', classpath(), 'kafka.tools.StorageTool', 'format', '-t', clusterId,
    '-c', path.join(kafkaHome(), 'server.properties'), '--ignore-formatted'], { cwd: kafkaHome() });
}

/** A quick admin probe: no retries and no kafkajs error logs while the broker is still coming up. */
function probeClient(cfg: Config) {
  return kafkaClient(cfg, 'stack-probe', { logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1000, requestTimeout: 5000 });
}

async function adminAnswers(cfg: Config): Promise<boolean> {
  const admin = probeClient(cfg).admin();
  try {
    await admin.connect();
    await admin.listTopics();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export function kafka(cfg: Config): Component {
  const { host, port } = brokerAddress(cfg);
  const { topic, partitions } = cfg.kafka;

  async function createTopic(): Promise<void> {
    const client = kafkaClient(cfg, 'stack', { logLevel: logLevel.NOTHING });
    const count = await ensureTopic(cfg, topic, partitions, client);
    if (count !== partitions) log(NAME, `topic ${topic} has ${count} partitions, the config wants ${partitions} (Kafka cannot remove partitions)`);
    await warmCoordinators(client);
  }

  /**
   * Kafka creates its group and producer-id coordinators lazily, on the first consumer group and the
   * first idempotent producer; until they have loaded, clients get "coordinator not available"
   * errors that kafkajs logs loudly while it retries. Trigger both here so `up` returns a broker that
   * every client can use at once.
   */
  async function warmCoordinators(client: ReturnType<typeof kafkaClient>): Promise<void> {
    const admin = client.admin();
    await admin.connect();
    try {
      await admin.fetchOffsets({ groupId: 'marquee-stack-warmup', topics: [topic] });
    } finally {
      await admin.disconnect();
    }
    const producer = idempotentProducer(client);
    await producer.connect(); // an idempotent producer asks for its producer id on connect
    await producer.disconnect();
  }

  return {
    name: NAME,

    async install() {
      installLibs();
      // bench:ingest's second ceiling (a reader that is not kafkajs); the stack runs without it.
      if (!commandExists('kcat')) {
        try { aptInstall(NAME, ['kcat']); } catch (err) { log(NAME, `kcat not installed (${(err as Error).message}); bench:ingest will skip its kcat ceiling`); }
      }
    },

    async start() {
      if (await portOpen(port, host)) {
        await waitFor(NAME, () => adminAnswers(cfg), 60_000);
        await createTopic();
        return;
      }
      const pid = readPid(NAME);
      if (pid === undefined || !isAlive(pid)) {
        mkdirSync(path.join(kafkaHome(), 'data'), { recursive: true });
        mkdirSync(statePath('logs'), { recursive: true });
        writeFileSync(path.join(kafkaHome(), 'server.properties'), serverProperties(cfg));
        writeFileSync(path.join(kafkaHome(), 'log4j.properties'), log4jProperties());
        formatStorage();
        startDaemon(NAME, 'java', ['-Xmx1g', '-Xms256m', '-XX:+UseG1GC', '-XX:MaxGCPauseMillis=20', ...javaArgs(),
          '-cp', classpath(), 'kafka.Kafka', path.join(kafkaHome(), 'server.properties')], { cwd: kafkaHome() });
      }
      // The port opens before the broker has caught up with its metadata log; the admin call waits for that.
      await waitFor(NAME, async () => (await portOpen(port, host)) && (await adminAnswers(cfg)), 120_000);
      await createTopic();
    },

    async stop() {
      // Controlled shutdown flushes and closes the logs; give it time so the next start skips recovery.
      await stopDaemon(NAME, 30_000);
    },

    async status(): Promise<ComponentStatus> {
      const address = `${host}:${port}`;
      if (!(await portOpen(port, host))) return { address, healthy: false, detail: 'not answering' };
      const admin = probeClient(cfg).admin();
      try {
        await admin.connect();
        const state = await describeTopic(admin, topic);
        if (state.partitions === undefined) return { address, healthy: false, detail: `topic ${topic} is missing` };
        if (state.partitions !== partitions) {
          return { address, healthy: false, detail: `topic ${topic} has ${state.partitions} partitions, want ${partitions}` };
        }
        return { address, healthy: true, detail: `KRaft; topic ${topic} with ${partitions} partitions` };
      } catch (err) {
        return { address, healthy: false, detail: `admin client failed: ${(err as Error).message}` };
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    },
  };
}

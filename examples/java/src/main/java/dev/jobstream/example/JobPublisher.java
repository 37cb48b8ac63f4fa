package dev.jobstream.example;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.jobstream.example.WireFormat.SpecError;
import java.io.IOException;
import java.io.Reader;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Publishes jobstream jobs from Java, following docs/wire-format.md: reads the job type's .avsc
 * files, writes the payload with the newest version (or --schema-version), sets the key and the
 * js-* headers, and sends with kafka-clients' default partitioner. One JSON line per record on
 * stdout; a one-line error on stderr and exit code 2 for bad input, 1 when the broker did not
 * take every record.
 */
public final class JobPublisher {
  private static final String USAGE = String.join("\n",
      "usage: java -jar jobstream-publisher.jar --bootstrap HOST:PORT --job-type TYPE",
      "         --schema-dir DIR [--count N] [--payload JSON] [--key TEMPLATE] [--topic TOPIC]",
      "         [--schema-version V] [--job-id TEMPLATE] [--parent-job-id ID] [--header N=V]...",
      "         [--traceparent TP] [--enqueued-at MS] [--producer NAME] [--producer-config FILE]",
      "         [--cloudevents [--source URI]] [--malformed] [--dry-run [--partitions N]]",
      "{i} in --payload, --key and --job-id is replaced by the job's index (0..N-1).",
      "--malformed sends one record for each way docs/wire-format.md says a record can be",
      "malformed; --dry-run prints the records instead of sending them. --cloudevents writes",
      "ce_* headers (CloudEvents binary mode) instead of js-* ones, for job types that accept",
      "them; --source sets ce_source.",
      "example: java -jar target/jobstream-publisher.jar --bootstrap 127.0.0.1:9092 \\",
      "  --job-type orders.confirmation --schema-dir ../schemas --count 10 \\",
      "  --payload '{\"order_id\": \"o-{i}\", \"email\": \"a@example.com\", "
          + "\"total_cents\": 1999}' --key 'o-{i}'");

  private static final ObjectMapper JSON = new ObjectMapper();

  private final Map<String, String> opts = new LinkedHashMap<>();
  private final Map<String, String> userHeaders = new LinkedHashMap<>();
  private boolean malformed;
  private boolean dryRun;
  private boolean cloudEvents;

  public static void main(String[] args) {
    try {
      System.exit(new JobPublisher(args).run());
    } catch (SpecError e) {
      System.err.println("error: " + e.getMessage());
      System.exit(2);
    }
  }

  private JobPublisher(String[] args) throws SpecError {
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (a.equals("--help") || a.equals("-h")) {
        System.out.println(USAGE);
        System.exit(0);
      } else if (a.equals("--malformed")) {
        malformed = true;
      } else if (a.equals("--dry-run")) {
        dryRun = true;
      } else if (a.equals("--cloudevents")) {
        cloudEvents = true;
      } else if (a.startsWith("--") && i + 1 < args.length) {
        String value = args[++i];
        if (a.equals("--header")) {
          int eq = value.indexOf('=');
          if (eq < 1) {
            throw new SpecError("--header " + value + ": expected NAME=VALUE");
          }
          userHeaders.put(value.substring(0, eq), value.substring(eq + 1));
        } else {
          opts.put(a.substring(2), value);
        }
      } else {
        throw new SpecError("unexpected argument " + a + " (--help for usage)");
      }
    }
    if (malformed && cloudEvents) {
      throw new SpecError("--malformed sends jobstream records; it does not go with --cloudevents");
    }
    for (String required : dryRun ? List.of("job-type", "schema-dir")
        : List.of("bootstrap", "job-type", "schema-dir")) {
      if (!opts.containsKey(required)) {
        throw new SpecError("--" + required + " is required (--help for usage)");
      }
    }
  }

  private int run() throws SpecError {
    String jobType = opts.get("job-type");
    TreeMap<Integer, Schema> versions =
        WireFormat.readSchemas(Path.of(opts.get("schema-dir")), jobType);
    int version = opts.containsKey("schema-version")
        ? number("schema-version") : versions.lastKey();
    Schema schema = versions.get(version);
    if (schema == null) {
      throw new SpecError("--schema-version " + version + ": " + jobType + " has versions "
          + versions.keySet());
    }
    String topic = opts.getOrDefault("topic", WireFormat.defaultTopic(jobType));
    int count = opts.containsKey("count") ? number("count") : 1;
    String template = opts.getOrDefault("payload", "{}");

    List<Outgoing> records = new ArrayList<>();
    if (malformed) {
      GenericRecord payload = AvroJson.record(schema, template.replace("{i}", "0"));
      WireFormat.Job job = job(jobType, version, WireFormat.encode(schema, payload), 0);
      for (Map.Entry<String, ProducerRecord<byte[], byte[]>> e :
          Malformed.records(topic, job, schema, payload, versions.lastKey()).entrySet()) {
        records.add(new Outgoing(e.getValue(), "malformed", e.getKey()));
      }
    } else {
      for (int i = 0; i < count; i++) {
        String json = template.replace("{i}", Integer.toString(i));
        byte[] value = WireFormat.encode(schema, AvroJson.record(schema, json));
        WireFormat.Job job = job(jobType, version, value, i);
        records.add(new Outgoing(job.toRecord(topic), "job_id", job.jobId));
      }
    }
    return dryRun ? print(records) : send(records);
  }

  /** One record to send, and what its output line names it by. */
  private record Outgoing(ProducerRecord<byte[], byte[]> record, String label, String name) {}

  private WireFormat.Job job(String jobType, int version, byte[] value, int i) throws SpecError {
    WireFormat.Job job = new WireFormat.Job();
    job.jobType = jobType;
    job.version = version;
    job.value = value;
    String index = Integer.toString(i);
    if (opts.containsKey("key")) {
      job.key = opts.get("key").replace("{i}", index);
    }
    if (opts.containsKey("job-id")) {
      job.jobId = opts.get("job-id").replace("{i}", index);
    }
    job.traceparent = opts.getOrDefault("traceparent", job.traceparent);
    if (opts.containsKey("enqueued-at")) {
      try {
        job.enqueuedAtMs = Long.parseLong(opts.get("enqueued-at"));
      } catch (NumberFormatException e) {
        throw new SpecError("--enqueued-at " + opts.get("enqueued-at")
            + ": expected milliseconds since the Unix epoch");
      }
    }
    job.producer = opts.getOrDefault("producer", defaultProducer());
    job.parentJobId = opts.get("parent-job-id");
    job.userHeaders.putAll(userHeaders);
    job.cloudEvents = cloudEvents;
    job.source = opts.getOrDefault("source", job.source);
    return job;
  }

  private static String defaultProducer() {
    String host;
    try {
      host = InetAddress.getLocalHost().getHostName();
    } catch (IOException e) {
      host = "unknown";
    }
    return "jobstream-java-example@" + host + ":" + ProcessHandle.current().pid();
  }

  private int number(String name) throws SpecError {
    try {
      int n = Integer.parseInt(opts.get(name));
      if (n >= 0) {
        return n;
      }
    } catch (NumberFormatException e) {
      // reported below
    }
    throw new SpecError("--" + name + " " + opts.get(name) + ": expected a whole number >= 0");
  }

  /** --dry-run: each record as JSON (key and value in hex), nothing sent. */
  private int print(List<Outgoing> records) throws SpecError {
    Integer partitions = opts.containsKey("partitions") ? number("partitions") : null;
    HexFormat hex = HexFormat.ofDelimiter(" ");
    for (Outgoing o : records) {
      ProducerRecord<byte[], byte[]> r = o.record;
      ObjectNode line = JSON.createObjectNode().put(o.label, o.name).put("topic", r.topic());
      line.put("key_hex", hex.formatHex(r.key()));
      ArrayNode headers = line.putArray("headers");
      for (Header h : r.headers()) {
        headers.addArray().add(h.key()).add(new String(h.value(), StandardCharsets.UTF_8));
      }
      line.put("value_hex", r.value() == null ? null : hex.formatHex(r.value()));
      if (partitions != null) {
        // The partition kafka-clients' default partitioner picks for a keyed record.
        line.put("partition", BuiltInPartitioner.partitionForKey(r.key(), partitions));
      }
      System.out.println(line);
    }
    return 0;
  }

  private Properties producerConfig() throws SpecError {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, opts.get("bootstrap"));
    p.put(ProducerConfig.CLIENT_ID_CONFIG, "jobstream-java-example");
    // As the Python publisher: no duplicates from the producer's own retries, every replica.
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    // No partitioner.class: the default one hashes the key with murmur2, as jobstream does.
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    // Fail within seconds when the broker or the topic is not there, not after minutes.
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    String extra = opts.get("producer-config");
    if (extra != null) {
      try (Reader r = Files.newBufferedReader(Path.of(extra), StandardCharsets.UTF_8)) {
        p.load(r); // e.g. security.protocol, sasl.* for a secured cluster
      } catch (IOException e) {
        throw new SpecError("--producer-config " + extra + ": " + e.getMessage());
      }
    }
    return p;
  }

  private int send(List<Outgoing> records) throws SpecError {
    String topic = records.isEmpty() ? "" : records.get(0).record.topic();
    List<Future<RecordMetadata>> sent = new ArrayList<>();
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerConfig())) {
      for (Outgoing o : records) {
        sent.add(producer.send(o.record));
      }
      producer.flush();
      int failed = 0;
      String firstError = null;
      for (int i = 0; i < sent.size(); i++) {
        Outgoing o = records.get(i);
        try {
          RecordMetadata md = sent.get(i).get();
          ObjectNode line = JSON.createObjectNode().put(o.label, o.name)
              .put("key", new String(o.record.key(), StandardCharsets.UTF_8))
              .put("partition", md.partition()).put("offset", md.offset());
          System.out.println(line);
        } catch (ExecutionException e) {
          failed++;
          firstError = firstError != null ? firstError : e.getCause().getMessage();
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new SpecError("interrupted while waiting for the broker");
        }
      }
      if (failed > 0) {
        System.err.println("error: the broker at " + opts.get("bootstrap") + " did not take "
            + failed + " of " + sent.size() + " records for " + topic + ": " + firstError
            + " (is the broker reachable, and does the topic exist? `jobstream topics apply`"
            + " creates it)");
        return 1;
      }
      return 0;
    } catch (KafkaException e) {
      System.err.println("error: cannot publish to " + topic + " at " + opts.get("bootstrap")
          + ": " + e.getMessage());
      return 1;
    }
  }
}

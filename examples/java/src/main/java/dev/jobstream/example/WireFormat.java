package dev.jobstream.example;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.avro.Schema;
import org.apache.avro.SchemaParseException;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeader;

/**
 * A jobstream job as one Kafka record, as docs/wire-format.md specifies it: the key, the js-*
 * headers, and the payload as schemaless Avro binary written with the schema the
 * js-schema-version header names.
 */
public final class WireFormat {
  public static final String JOB_TYPE = "js-job-type";
  public static final String SCHEMA_VERSION = "js-schema-version";
  public static final String JOB_ID = "js-job-id";
  public static final String PARENT_JOB_ID = "js-parent-job-id";
  public static final String TRACEPARENT = "traceparent";
  public static final String ATTEMPT = "js-attempt";
  public static final String ENQUEUED_AT = "js-enqueued-at";
  public static final String PRODUCER = "js-producer";

  // CloudEvents 1.0, binary mode of the Kafka binding, for job types whose workers set
  // jobs.<type>.accept: [jobstream, cloudevents] (docs/wire-format.md, CloudEvents binary mode).
  public static final String CE_SPECVERSION = "ce_specversion";
  public static final String CE_ID = "ce_id";
  public static final String CE_SOURCE = "ce_source";
  public static final String CE_TYPE = "ce_type";
  public static final String CE_TIME = "ce_time";
  public static final String CE_DATASCHEMA = "ce_dataschema";
  public static final String CE_TRACEPARENT = "ce_traceparent";
  public static final String CONTENT_TYPE = "content-type";

  private static final Pattern VERSION_FILE = Pattern.compile("^v([1-9][0-9]*)\\.avsc$");
  private static final SecureRandom RANDOM = new SecureRandom();

  private WireFormat() {}

  /** A mistake in what the publisher was given (a bad id, a missing schema, a bad payload). */
  public static final class SpecError extends Exception {
    private static final long serialVersionUID = 1L;

    public SpecError(String message) {
      super(message);
    }
  }

  /** The job type's schema versions, from {@code <schemaDir>/<jobType>/v<N>.avsc}. */
  public static TreeMap<Integer, Schema> readSchemas(Path schemaDir, String jobType)
      throws SpecError {
    Path dir = schemaDir.resolve(jobType);
    if (!Files.isDirectory(dir)) {
      throw new SpecError("no schema directory for job type " + jobType + ": " + dir);
    }
    TreeMap<Integer, Schema> versions = new TreeMap<>();
    try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*.avsc")) {
      for (Path file : files) {
        Matcher m = VERSION_FILE.matcher(file.getFileName().toString());
        if (!m.matches()) {
          throw new SpecError(file + ": schema files must be named v<N>.avsc");
        }
        // One parser per file: versions of a type share its record name.
        versions.put(Integer.parseInt(m.group(1)), new Schema.Parser().parse(file.toFile()));
      }
    } catch (IOException | SchemaParseException e) {
      throw new SpecError("cannot read the schemas of " + jobType + " in " + dir + ": " + e);
    }
    if (versions.isEmpty()) {
      throw new SpecError("no v<N>.avsc file in " + dir);
    }
    return versions;
  }

  /** A new job id as the Python publisher makes them: a random UUID as 32 hex digits. */
  public static String newJobId() {
    return UUID.randomUUID().toString().replace("-", "");
  }

  /** A new W3C traceparent (version 00, sampled): a new trace for a job with no parent. */
  public static String newTraceparent() {
    byte[] ids = new byte[24];
    RANDOM.nextBytes(ids);
    String hex = HexFormat.of().formatHex(ids);
    return "00-" + hex.substring(0, 32) + "-" + hex.substring(32) + "-01";
  }

  /** Job ids (and parent ids, traceparents) are 1-200 printable characters. */
  public static void checkId(String name, String value) throws SpecError {
    int n = value.codePointCount(0, value.length());
    boolean printable = value.codePoints().allMatch(WireFormat::printable);
    if (n < 1 || n > 200 || !printable) {
      throw new SpecError(name + ": must be a printable string of 1-200 characters, got \""
          + value + "\"");
    }
  }

  private static boolean printable(int cp) {
    if (cp == ' ') {
      return true;
    }
    switch (Character.getType(cp)) {
      case Character.CONTROL, Character.FORMAT, Character.SURROGATE, Character.PRIVATE_USE,
          Character.UNASSIGNED, Character.SPACE_SEPARATOR, Character.LINE_SEPARATOR,
          Character.PARAGRAPH_SEPARATOR:
        return false;
      default:
        return true;
    }
  }

  /** The payload as Avro binary without any framing (no container, marker or schema id). */
  public static byte[] encode(Schema schema, GenericRecord payload) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
    try {
      new GenericDatumWriter<GenericRecord>(schema).write(payload, encoder);
      encoder.flush();
    } catch (IOException e) {
      throw new IllegalStateException("writing to memory failed", e);
    }
    return out.toByteArray();
  }

  /** Everything that makes one job record; {@link #toRecord} lays it out on the wire. */
  public static final class Job {
    public String jobType;
    public int version;
    public byte[] value;
    public String key; // the ordering key; null: the job id is the key
    public String jobId = newJobId();
    public String traceparent = newTraceparent();
    public long enqueuedAtMs = System.currentTimeMillis();
    public String producer; // optional: who sent it, for people reading a dead letter
    public String parentJobId; // optional
    public Map<String, String> userHeaders = new LinkedHashMap<>();
    public boolean cloudEvents; // ce_* headers instead of js-* ones
    public String source = "/jobstream-java-example"; // ce_source, when cloudEvents

    /** The record key: the ordering key if there is one, else the job id (never null). */
    public byte[] keyBytes() {
      return (key != null ? key : jobId).getBytes(StandardCharsets.UTF_8);
    }

    /** The headers in the order the Python publisher writes them (order is not significant). */
    public List<Map.Entry<String, String>> headers() throws SpecError {
      List<Map.Entry<String, String>> out = new ArrayList<>();
      for (Map.Entry<String, String> h : userHeaders.entrySet()) {
        if (h.getKey().startsWith("js-") || h.getKey().equals(TRACEPARENT)) {
          throw new SpecError("header " + h.getKey() + " is reserved by jobstream");
        }
        out.add(Map.entry(h.getKey(), h.getValue()));
      }
      checkId("job id", jobId);
      checkId("traceparent", traceparent);
      if (cloudEvents) {
        return cloudEventHeaders(out);
      }
      out.add(Map.entry(JOB_TYPE, jobType));
      out.add(Map.entry(SCHEMA_VERSION, Integer.toString(version)));
      out.add(Map.entry(ATTEMPT, "1"));
      if (producer != null) {
        out.add(Map.entry(PRODUCER, producer));
      }
      out.add(Map.entry(JOB_ID, jobId));
      out.add(Map.entry(TRACEPARENT, traceparent));
      out.add(Map.entry(ENQUEUED_AT, Long.toString(enqueuedAtMs)));
      if (parentJobId != null) {
        checkId("parent job id", parentJobId);
        out.add(Map.entry(PARENT_JOB_ID, parentJobId));
      }
      return out;
    }

    /** The same job as a CloudEvent: each js-* field in its ce_* header. */
    private List<Map.Entry<String, String>> cloudEventHeaders(
        List<Map.Entry<String, String>> out) throws SpecError {
      for (Map.Entry<String, String> h : out) {
        if (h.getKey().startsWith("ce_") || h.getKey().equals(CONTENT_TYPE)) {
          throw new SpecError("header " + h.getKey() + " is set by --cloudevents");
        }
      }
      out.add(Map.entry(CE_SPECVERSION, "1.0"));
      out.add(Map.entry(CE_ID, jobId));
      out.add(Map.entry(CE_SOURCE, source));
      out.add(Map.entry(CE_TYPE, jobType));
      // RFC 3339 in UTC, e.g. 2026-01-01T00:00:00.250Z
      out.add(Map.entry(CE_TIME, Instant.ofEpochMilli(enqueuedAtMs).toString()));
      out.add(Map.entry(CE_DATASCHEMA, "urn:jobstream:" + jobType + ":v" + version));
      out.add(Map.entry(CE_TRACEPARENT, traceparent));
      out.add(Map.entry(CONTENT_TYPE, "application/avro"));
      if (parentJobId != null) { // CloudEvents has no such attribute; the js-* header is read
        checkId("parent job id", parentJobId);
        out.add(Map.entry(PARENT_JOB_ID, parentJobId));
      }
      return out;
    }

    public ProducerRecord<byte[], byte[]> toRecord(String topic) throws SpecError {
      return WireFormat.toRecord(topic, keyBytes(), value, headers());
    }
  }

  /** A record with the given headers, each value UTF-8 encoded. */
  public static ProducerRecord<byte[], byte[]> toRecord(
      String topic, byte[] key, byte[] value, List<Map.Entry<String, String>> headers) {
    ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, key, value);
    for (Map.Entry<String, String> h : headers) {
      record.headers().add(new RecordHeader(h.getKey(),
          h.getValue().getBytes(StandardCharsets.UTF_8)));
    }
    return record;
  }

  /** The main topic of a job type when the workers' settings name no other. */
  public static String defaultTopic(String jobType) {
    return "jobs." + jobType;
  }
}

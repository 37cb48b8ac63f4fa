package dev.jobstream.example;

import dev.jobstream.example.WireFormat.SpecError;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.apache.avro.Schema;
import org.apache.avro.file.DataFileWriter;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * One record for each way of breaking the spec that docs/wire-format.md lists under
 * "Malformed records" (same kind names), each a good job with one thing wrong. Java's usual
 * Avro defaults are among them: Confluent framing, a container file, single-object encoding.
 * Each is keyed {@code malformed-<kind>}, so it can be found in the DLQ.
 */
public final class Malformed {
  private Malformed() {}

  /** A good job: its headers and value, which each kind changes one thing of. */
  private record Good(List<Map.Entry<String, String>> headers, byte[] value, Schema schema,
      GenericRecord payload, int newest) {}

  private static final Map<String, Function<Good, Good>> KINDS = new LinkedHashMap<>();

  static {
    KINDS.put("missing-job-id", g -> headers(g, WireFormat.JOB_ID, null));
    KINDS.put("empty-job-id", g -> headers(g, WireFormat.JOB_ID, ""));
    KINDS.put("missing-job-type", g -> headers(g, WireFormat.JOB_TYPE, null));
    KINDS.put("missing-schema-version", g -> headers(g, WireFormat.SCHEMA_VERSION, null));
    KINDS.put("bad-schema-version", g -> headers(g, WireFormat.SCHEMA_VERSION, "two"));
    KINDS.put("zero-schema-version", g -> headers(g, WireFormat.SCHEMA_VERSION, "0"));
    // The publisher is a release ahead of the workers: a version they do not have yet.
    KINDS.put("unknown-schema-version",
        g -> headers(g, WireFormat.SCHEMA_VERSION, Integer.toString(g.newest + 1)));
    KINDS.put("bad-attempt", g -> headers(g, WireFormat.ATTEMPT, "first"));
    KINDS.put("bad-enqueued-at", g -> headers(g, WireFormat.ENQUEUED_AT, "2026-01-01T00:00:00Z"));
    KINDS.put("unknown-job-type", g -> headers(g, WireFormat.JOB_TYPE, "no.such.job.type"));
    KINDS.put("no-value", g -> value(g, null));
    KINDS.put("truncated-avro", g -> value(g, Arrays.copyOf(g.value, g.value.length - 1)));
    KINDS.put("trailing-bytes", g -> value(g, Arrays.copyOf(g.value, g.value.length + 1)));
    KINDS.put("confluent-framed", g -> value(g, confluentFramed(g.value)));
    KINDS.put("avro-container-file", g -> value(g, containerFile(g.schema, g.payload)));
    KINDS.put("single-object-encoding", g -> value(g, singleObject(g.schema, g.payload)));
  }

  /** kind -> its record (on the job's topic), in the order of the spec's table. The job's id
   * (and so the key) becomes {@code malformed-<kind>} for each. */
  public static Map<String, ProducerRecord<byte[], byte[]>> records(
      String topic, WireFormat.Job job, Schema schema, GenericRecord payload, int newest)
      throws SpecError {
    Map<String, ProducerRecord<byte[], byte[]>> out = new LinkedHashMap<>();
    for (Map.Entry<String, Function<Good, Good>> kind : KINDS.entrySet()) {
      String name = kind.getKey();
      job.jobId = "malformed-" + name;
      Good bad = kind.getValue().apply(new Good(job.headers(), job.value, schema, payload,
          newest));
      byte[] key = job.jobId.getBytes(StandardCharsets.UTF_8);
      out.put(name, WireFormat.toRecord(topic, key, bad.value, bad.headers));
    }
    return out;
  }

  /** The header set to value, or removed for null. */
  private static Good headers(Good g, String name, String value) {
    List<Map.Entry<String, String>> out = new ArrayList<>();
    for (Map.Entry<String, String> h : g.headers) {
      if (!h.getKey().equals(name)) {
        out.add(h);
      }
    }
    if (value != null) {
      out.add(Map.entry(name, value));
    }
    return new Good(out, g.value, g.schema, g.payload, g.newest);
  }

  private static Good value(Good g, byte[] value) {
    return new Good(g.headers, value, g.schema, g.payload, g.newest);
  }

  /** What KafkaAvroSerializer writes: magic byte 0, a 4-byte schema id, then the datum. */
  private static byte[] confluentFramed(byte[] datum) {
    return ByteBuffer.allocate(5 + datum.length).put((byte) 0).putInt(1).put(datum).array();
  }

  /** What DataFileWriter writes: an Avro object container file holding the one record. */
  private static byte[] containerFile(Schema schema, GenericRecord payload) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (DataFileWriter<GenericRecord> w =
        new DataFileWriter<>(new GenericDatumWriter<GenericRecord>(schema))) {
      w.create(schema, out);
      w.append(payload);
    } catch (IOException e) {
      throw new IllegalStateException("writing to memory failed", e);
    }
    return out.toByteArray();
  }

  /** What a generated class's toByteBuffer() writes: marker C3 01, fingerprint, datum. */
  private static byte[] singleObject(Schema schema, GenericRecord payload) {
    try {
      ByteBuffer buf = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema)
          .encode(payload);
      byte[] out = new byte[buf.remaining()];
      buf.get(out);
      return out;
    } catch (IOException e) {
      throw new IllegalStateException("writing to memory failed", e);
    }
  }
}

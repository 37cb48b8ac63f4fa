package dev.jobstream.example;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.jobstream.example.WireFormat.SpecError;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;

/**
 * A payload given as plain JSON ({"note": "gift"}, not Avro's {"note": {"string": "gift"}})
 * turned into a record of a schema, refusing what the Python publisher refuses: an unknown
 * field, a missing field without a default, a value of the wrong type. Errors name the field
 * (payload.tags[1]). Jackson comes with Avro, which parses schemas with it.
 */
public final class AvroJson {
  private static final ObjectMapper JSON = new ObjectMapper();

  private AvroJson() {}

  public static GenericRecord record(Schema schema, String json) throws SpecError {
    JsonNode node;
    try {
      node = JSON.readTree(json);
    } catch (JsonProcessingException e) {
      throw new SpecError("payload is not JSON: " + e.getOriginalMessage());
    }
    return (GenericRecord) convert(schema, node, "payload");
  }

  private static Object convert(Schema schema, JsonNode node, String path) throws SpecError {
    switch (schema.getType()) {
      case RECORD:
        return record(schema, node, path);
      case UNION:
        return union(schema, node, path);
      case NULL:
        if (!node.isNull()) {
          throw wrong(path, "null", node);
        }
        return null;
      case BOOLEAN:
        if (!node.isBoolean()) {
          throw wrong(path, "boolean", node);
        }
        return node.booleanValue();
      case INT:
        if (!node.isIntegralNumber() || !node.canConvertToInt()) {
          throw wrong(path, "int", node);
        }
        return node.intValue();
      case LONG:
        if (!node.isIntegralNumber() || !node.canConvertToLong()) {
          throw wrong(path, "long", node);
        }
        return node.longValue();
      case FLOAT:
        if (!node.isNumber()) {
          throw wrong(path, "float", node);
        }
        return node.floatValue();
      case DOUBLE:
        if (!node.isNumber()) {
          throw wrong(path, "double", node);
        }
        return node.doubleValue();
      case STRING:
        if (!node.isTextual()) {
          throw wrong(path, "string", node);
        }
        return node.textValue();
      case ENUM:
        if (!node.isTextual() || !schema.getEnumSymbols().contains(node.textValue())) {
          throw new SpecError(path + ": " + node + " is not one of " + schema.getEnumSymbols());
        }
        return new GenericData.EnumSymbol(schema, node.textValue());
      case ARRAY:
        return array(schema, node, path);
      case MAP:
        return map(schema, node, path);
      default: // bytes and fixed have no plain-JSON form worth guessing
        throw new SpecError(path + ": " + schema.getType() + " fields are not supported here");
    }
  }

  private static GenericRecord record(Schema schema, JsonNode node, String path)
      throws SpecError {
    if (!node.isObject()) {
      throw wrong(path, "a record (object)", node);
    }
    Set<String> known = new TreeSet<>();
    for (Schema.Field f : schema.getFields()) {
      known.add(f.name());
    }
    for (Iterator<String> names = node.fieldNames(); names.hasNext(); ) {
      String name = names.next();
      if (!known.contains(name)) {
        throw new SpecError(path + "." + name + ": unknown field (known: " + known + ")");
      }
    }
    GenericData.Record out = new GenericData.Record(schema);
    for (Schema.Field f : schema.getFields()) {
      JsonNode value = node.get(f.name());
      if (value != null) {
        out.put(f.pos(), convert(f.schema(), value, path + "." + f.name()));
      } else if (f.hasDefaultValue()) {
        out.put(f.pos(), GenericData.get().getDefaultValue(f));
      } else {
        throw new SpecError(path + "." + f.name() + ": required field is missing");
      }
    }
    return out;
  }

  /** The first branch the value fits, as the Python publisher picks it. */
  private static Object union(Schema schema, JsonNode node, String path) throws SpecError {
    List<String> names = new ArrayList<>();
    for (Schema branch : schema.getTypes()) {
      names.add(branch.getType().getName());
      try {
        return convert(branch, node, path);
      } catch (SpecError e) {
        // try the next branch
      }
    }
    throw new SpecError(path + ": expected one of " + names + ", got " + kind(node));
  }

  private static List<Object> array(Schema schema, JsonNode node, String path)
      throws SpecError {
    if (!node.isArray()) {
      throw wrong(path, "array", node);
    }
    List<Object> out = new ArrayList<>();
    for (int i = 0; i < node.size(); i++) {
      out.add(convert(schema.getElementType(), node.get(i), path + "[" + i + "]"));
    }
    return out;
  }

  private static Map<String, Object> map(Schema schema, JsonNode node, String path)
      throws SpecError {
    if (!node.isObject()) {
      throw wrong(path, "map (object)", node);
    }
    Map<String, Object> out = new LinkedHashMap<>();
    for (Map.Entry<String, JsonNode> e : node.properties()) {
      out.put(e.getKey(), convert(schema.getValueType(), e.getValue(), path + "['" + e.getKey()
          + "']"));
    }
    return out;
  }

  private static SpecError wrong(String path, String expected, JsonNode node) {
    return new SpecError(path + ": expected " + expected + ", got " + kind(node));
  }

  private static String kind(JsonNode node) {
    return node.getNodeType().name().toLowerCase();
  }
}

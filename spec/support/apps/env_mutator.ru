# frozen_string_literal: true

# Each request appends to the env Strings that come from the listener's template, then
# reports what it saw: an unfrozen template String would carry one request's change into
# every later request.
KEYS = %w[SCRIPT_NAME rack.url_scheme sendfile.type QUERY_STRING REQUEST_METHOD SERVER_PROTOCOL SERVER_PORT].freeze

run(lambda do |env|
  seen = KEYS.map { |k| "#{k}=#{env[k]}" }
  tried = KEYS.map do |k|
    env[k] << "/mount"
    "#{k}:mutable"
  rescue FrozenError
    "#{k}:frozen"
  end
  [200, { "Content-Type" => "text/plain" }, [(seen + tried).join("\n")]]
end)

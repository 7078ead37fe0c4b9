# frozen_string_literal: true

module Iodine
  module Base
    # `Iodine.connect`: a client connection, raw (TCP or Unix) or WebSocket, with the same
    # callbacks and `Iodine::Connection` as the server's connections.
    #
    # Options (DEFAULT_SETTINGS fill the missing ones, as for `listen`):
    # - `url:` `ws://host:port/path`, `raw://host:port`, `tcp://…`, `unix://:0/path.sock`;
    #   or `service:` (`:ws` / `:raw`…), `address:`, `port:` (0 or a path: Unix socket), `path:`.
    # - `handler:` the callback object (required; no block).
    # - `headers:` (WebSocket) a Hash of extra request headers; an Array value sends the header
    #   once per element. `cookies:` a Hash sent as one `Cookie` header.
    # - `ping:` WebSocket ping interval in seconds (default 40); for raw connections the connect
    #   timeout, as with the C gem.
    # - `connect_timeout:` (or `timeout:`) seconds to connect and, for WebSocket, to finish the
    #   handshake. Default: `ping:` when given, else 10.
    #
    # Returns Iodine. Every failure (refused, unknown host, handshake rejected, timeout) ends
    # in the handler's `on_close`, exactly once and without `on_open`.
    module Connect
      # Seconds to connect (and finish a WebSocket handshake) when nothing says otherwise.
      DEFAULT_TIMEOUT = 10

      module_function

      def call(options)
        raise TypeError, "Iodine.connect expects a Hash of options" unless options.is_a?(Hash)

        opts = Listen.merge_defaults(options)
        Listen.apply_url(opts) if opts[:url]
        handler = opts[:handler]
        if handler.nil? && !opts[:app].nil?
          Base.log(3, "Iodine.connect: the :app option is deprecated, use :handler")
          handler = opts[:app]
        end
        raise ArgumentError, "a :handler is required." if [nil, true, false].include?(handler)

        kind = kind(opts)
        native = target(opts).merge(kind: kind, timeout: timeout(opts, kind))
        tls = tls(opts)
        native[:tls] = tls if tls
        if kind == "websocket"
          native[:path] = path(opts[:path])
          native[:headers] = headers(opts[:headers]) + cookies(opts[:cookies])
          ping = Listen.integer(opts[:ping])
          raise Listen::OptionError, "Iodine.connect: ping must be from 1 to 255 seconds, got #{opts[:ping]}" if ping > 255

          native[:ping] = ping if ping.positive?
          max_msg = Listen.integer(opts[:max_msg])
          native[:max_msg] = Listen.limited(:max_msg, max_msg) * 1024 if max_msg.positive?
          native[:host] = native[:unix] ? "localhost" : host_header(native[:address], native[:port])
        end
        Base.connect(handler, native)
        Iodine
      end

      # "raw" or "websocket", from the first letters of :service (as the C gem read them):
      # `ws`/`wss`/`http…` are WebSocket, the rest (`tls` too) raw.
      def kind(opts)
        name = opts[:service].to_s.downcase
        name.start_with?("w", "h") ? "websocket" : "raw"
      end

      # The client's Iodine::TLS: `tls:` when given; an empty one (the server checked against
      # the system's roots) for `wss`, `https` and `tl…`; else nil.
      def tls(opts)
        tls = opts[:tls]
        return tls if tls.is_a?(Iodine::TLS)
        raise TypeError, "tls: must be an Iodine::TLS, got #{tls.class}" unless tls.nil? || tls == false

        Listen.tls_service?(opts) ? Iodine::TLS.new : nil
      end

      # { address:, port: } or { unix: } (an address with a `/`, or port 0, is a socket path).
      def target(opts)
        address = opts[:address]&.to_s
        address = nil if address&.empty?
        port = Listen.port_number(opts[:port], "Iodine.connect")
        raise ArgumentError, "Iodine.connect: port #{port} is out of range" if port >= 65_536
        return { unix: address } if address && (address.include?("/") || port.zero?)
        raise ArgumentError, "Iodine.connect: a port (or a Unix socket path) is required" if port.zero?

        { address: address || "127.0.0.1", port: port }
      end

      # Seconds to connect (and finish a WebSocket handshake): the first of connect_timeout,
      # timeout and ping that is a positive number; more than a day (or not finite) is an
      # ArgumentError.
      def timeout(opts, _kind)
        [opts[:connect_timeout], opts[:timeout], opts[:ping]].each do |value|
          next unless value.is_a?(Numeric) && (value.positive? || (value.is_a?(Float) && value.nan?))

          seconds = value.to_f
          unless seconds.finite? && seconds <= Listen::LIMITS[:connect_timeout]
            raise Listen::OptionError, "Iodine.connect: a timeout must be at most #{Listen::LIMITS[:connect_timeout]} seconds, got #{value}"
          end

          return seconds
        end
        DEFAULT_TIMEOUT
      end

      def path(value)
        value = value.to_s
        value.start_with?("/") ? value : "/#{value}"
      end

      def host_header(address, port)
        host = address.include?(":") ? "[#{address}]" : address
        "#{host}:#{port}"
      end

      # [[name, value], …] from a Hash of String/Symbol names and String/Symbol/Array values;
      # anything else is skipped with a warning.
      def headers(hash)
        return [] if hash.nil?
        unless hash.is_a?(Hash)
          Base.log(3, "Iodine.connect: headers: must be a Hash, ignored")
          return []
        end
        hash.each_with_object([]) do |(name, value), out|
          unless name.is_a?(String) || name.is_a?(Symbol)
            Base.log(3, "Iodine.connect: header name #{name.inspect} skipped (not a String or Symbol)")
            next
          end
          Array(value).each do |v|
            if v.is_a?(String) || v.is_a?(Symbol)
              out << [name.to_s, v.to_s]
            else
              Base.log(3, "Iodine.connect: header #{name} value #{v.inspect} skipped (not a String or Symbol)")
            end
          end
        end
      end

      # One Cookie header from a Hash (nothing when empty).
      def cookies(hash)
        return [] if hash.nil? || (hash.respond_to?(:empty?) && hash.empty?)
        unless hash.is_a?(Hash)
          Base.log(3, "Iodine.connect: cookies: must be a Hash, ignored")
          return []
        end
        [["Cookie", hash.map { |k, v| "#{k}=#{v}" }.join("; ")]]
      end
    end
  end
end

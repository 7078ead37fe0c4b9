# frozen_string_literal: true

module Iodine
  module Base
    # `Iodine.listen`: merges DEFAULT_SETTINGS, decides the service and address, and binds.
    module Listen
      # Keys filled from DEFAULT_SETTINGS when the caller did not pass them (or passed nil).
      DEFAULTED = %i[address app body_timeout cache_control cookies handler head_timeout headers http2 log max_body
                     max_clients max_headers max_msg max_streams method metrics min_upload_rate path ping port public
                     timeout tls].freeze
      # Connections kept free of `max_clients` for files, pipes and the rest (the C gem's 64).
      FD_MARGIN = 64
      # The C gem's cap on connections per process (FIO_MAX_SOCK_CAPACITY).
      MAX_CAPACITY = 131_072

      # A listen/connect option out of its range (or a public folder that isn't there): an
      # ArgumentError from the API, one `Error:` line from the command line.
      class OptionError < ArgumentError; end

      # The largest value each size or duration option takes (the unit is the option's).
      LIMITS = {
        max_body: 1_048_576, # MiB (1 TiB)
        max_headers: 1_048_576, # KiB (1 GiB)
        max_msg: 4_194_304, # KiB (4 GiB)
        max_clients: 16_777_216,
        max_streams: 65_536,
        head_timeout: 86_400, # seconds (a day)
        body_timeout: 86_400,
        min_upload_rate: 1_048_576, # KiB/s
        connect_timeout: 86_400
      }.freeze

      module_function

      # Binds a listener; returns the handler (for HTTP with a block: the block).
      def call(options, block)
        raise TypeError, "Iodine.listen expects a Hash of options" unless options.is_a?(Hash)

        opts = merge_defaults(options)
        apply_url(opts) if opts[:url]
        handler = pick_handler(opts, block)
        opts[:tls] = tls(opts)
        case service(opts)
        when :http then listen_http(opts, handler)
        else listen_raw(opts, handler)
        end
        handler
      end

      # The listener's Iodine::TLS: `tls:` when given, a self-signed one for this machine's
      # host name when the service asks for TLS (`https`, `wss`, `tls`) without one, else nil.
      def tls(opts)
        tls = opts[:tls]
        return tls if tls.is_a?(Iodine::TLS)
        raise TypeError, "tls: must be an Iodine::TLS, got #{tls.class}" unless tls.nil? || tls == false

        tls_service?(opts) ? Iodine::TLS.new(host_name) : nil
      end

      # Whether :service names TLS (`https`, `wss`, or one starting with `tl`).
      def tls_service?(opts)
        name = opts[:service].to_s.downcase
        name.start_with?("tl") || name == "https" || name == "wss"
      end

      # This machine's host name (the name of a self-signed certificate).
      def host_name
        name = Socket.gethostname.to_s
        name.empty? ? "localhost" : name
      rescue SystemCallError
        "localhost"
      end

      def merge_defaults(options)
        opts = options.dup
        DEFAULTED.each { |k| opts[k] = Iodine::DEFAULT_SETTINGS[k] if opts[k].nil? }
        opts
      end

      def pick_handler(opts, block)
        if opts[:handler].nil? && !opts[:app].nil?
          Base.log(3, "Iodine.listen: the :app option is deprecated, use :handler")
          opts[:handler] = opts[:app]
        end
        opts[:handler] = block if opts[:handler].nil? && block
        raise ArgumentError, "a :handler is required." if opts[:handler].nil?

        opts[:handler]
      end

      # The service named by the first letter of :service (`h`/`w` → HTTP, anything else
      # raw; `https`/`wss` are HTTP and `tl…` raw, over TLS: see `tls`).
      def service(opts)
        name = opts[:service].to_s.downcase
        return :raw if name.start_with?("tl")
        return :http if name.start_with?("h", "w")

        :raw
      end

      # `scheme://host:port/path` → :service, :address, :port (a path without host: Unix socket).
      def apply_url(opts)
        m = %r{\A(?:(?<scheme>[a-z0-9+.-]+)://)?(?<host>\[[^\]]*\]|[^:/]*)?(?::(?<port>\d+))?(?<path>/.*)?\z}i.match(opts[:url].to_s)
        raise ArgumentError, "malformed :url #{opts[:url].inspect}" unless m

        opts[:service] = m[:scheme] if m[:scheme]
        host = m[:host].to_s.delete_prefix("[").delete_suffix("]")
        if m[:port] && m[:port].to_i != 0
          opts[:port] = m[:port]
          opts[:address] = host.empty? ? nil : host
          opts[:path] = m[:path] if m[:path]
        elsif m[:path]
          opts[:address] = m[:path]
          opts[:port] = 0
        else
          opts[:address] = host.empty? ? nil : host
        end
      end

      # A raw listener: `handler` is the factory; `handler.call` (no arguments) gives each
      # connection's callback object (nil, false or true close the connection).
      def listen_raw(opts, factory)
        raise ArgumentError, "a raw listener's handler must respond to #call (a factory)" unless factory.respond_to?(:call)

        address, port, unix = where(opts)
        native = { address: address, port: port, unix: unix, unix_mode: unix_mode(opts[:unix_mode]),
                   max_clients: max_clients(opts[:max_clients]) }
        if (tls = opts[:tls])
          native[:tls] = tls
          native[:protocols] = tls.protocol_handlers
        end
        Base.listen_raw(factory, native)
      end

      def listen_http(opts, handler)
        handler = not_found_app(opts[:public]) if handler == false
        address, port, unix = where(opts)
        native = {
          address: address, port: port, unix: unix, unix_mode: unix_mode(opts[:unix_mode]),
          log: opts[:log] ? true : false,
          max_body: limited(:max_body, positive(opts[:max_body], 50)) * 1024 * 1024,
          max_head: limited(:max_headers, positive(opts[:max_headers], 32)) * 1024,
          timeout: timeout(opts[:timeout]),
          head_timeout: limited(:head_timeout, positive(opts[:head_timeout], 20)),
          body_timeout: limited(:body_timeout, positive(opts[:body_timeout], 30)),
          min_upload_rate: limited(:min_upload_rate, min_rate(opts[:min_upload_rate])) * 1024,
          max_clients: max_clients(opts[:max_clients]),
          max_msg: limited(:max_msg, positive(opts[:max_msg], 256)) * 1024,
          ping: timeout(opts[:ping]),
          tls: opts[:tls],
          http2: opts[:http2] != false,
          metrics: metrics_path(opts[:metrics]),
          max_streams: limited(:max_streams, positive(opts[:max_streams], 100))
        }
        if opts[:public]
          folder = opts[:public].to_s
          folder = File.join(Dir.home, folder[2..]) if folder.start_with?("~/")
          raise OptionError, "the public folder #{folder} is not a folder that can be read" unless File.directory?(folder) && File.readable?(folder)

          native[:public] = folder
          native[:cache_control] = opts[:cache_control].to_s if opts[:cache_control]
        end
        Base.listen_http(handler, native)
      end

      # The metrics page's path (`metrics:` / `-metrics`): nil for none; it must start with "/".
      def metrics_path(value)
        return nil if value.nil? || value == false || value.to_s.empty?
        raise OptionError, "metrics must be a path starting with /, got #{value.inspect}" unless value.to_s.start_with?("/")

        value.to_s
      end

      # The permission bits of a Unix socket file: 0777 unless `unix_mode:` says otherwise (an
      # Integer such as 0o660, or an octal String such as "660").
      def unix_mode(value)
        return 0o777 if value.nil?

        mode = value.is_a?(String) && value.match?(/\A0?[0-7]{1,4}\z/) ? value.to_i(8) : value
        raise ArgumentError, "unix_mode must be a file mode from 0 to 0o7777, got #{value.inspect}" unless mode.is_a?(Integer) && mode.between?(0, 0o7777)

        mode
      end

      # [address, port, unix_path]: a Unix socket when the address is a path or the port is 0.
      def where(opts)
        address = opts[:address]&.to_s
        address = nil if address&.empty?
        port_i = Listen.port_number(opts[:port], "Iodine.listen")
        if port_i >= 65_536
          fallback = Listen.port_number(Iodine::DEFAULT_SETTINGS[:port], "Iodine.listen") rescue 3000 # rubocop:disable Style/RescueModifier
          fallback = 3000 unless fallback < 65_536
          Base.log(3, "port #{port_i} is out of range, using #{fallback}")
          port_i = fallback
        end
        return [nil, 0, address] if address&.start_with?("/", "./") || (address && port_i.zero?)

        [address, port_i, nil]
      end

      # The port `value` names: an Integer or a String of digits (nil or "" is 0: no port).
      # Anything else (a negative number, letters) is an ArgumentError that says where it came
      # from, never a random port.
      def port_number(value, who)
        text = value.to_s.strip
        return 0 if text.empty?
        return text.to_i if text.match?(/\A\d+\z/)

        origin = ENV["PORT"] && ENV["PORT"].strip == text ? " (from $PORT)" : ""
        raise ArgumentError, "#{who}: port must be a number from 0 to 65535, got #{value.inspect}#{origin}"
      end

      def positive(value, default)
        value = integer(value)
        value.positive? ? value : default
      end

      # `value` as an Integer (a Float rounded down; nil, "" and garbage are 0); a value no
      # Integer can hold (Infinity, NaN) is an OptionError.
      def integer(value)
        return value if value.is_a?(Integer)
        raise OptionError, "#{value.inspect} is not a finite number" if value.is_a?(Float) && !value.finite?

        value.to_i
      end

      # `value` unless it is over the option's largest (LIMITS): then an OptionError.
      def limited(name, value)
        max = LIMITS.fetch(name)
        raise OptionError, "#{name} must be at most #{max}, got #{value}" if value > max

        value
      end

      def timeout(value)
        value = integer(value)
        return 40 unless value.positive?
        if value > 255
          Base.log(3, "timeout #{value} is out of range (1..255), using 40")
          return 40
        end
        value
      end

      # KiB/s; 0 turns the minimum off, nil or negative gives the default (4).
      def min_rate(value)
        return 4 if value.nil? || integer(value).negative?

        integer(value)
      end

      # The `max_clients` option, or the open-files limit `start` will set (the hard limit)
      # less a margin, capped as the C gem did.
      def max_clients(value)
        return limited(:max_clients, integer(value)) if integer(value).positive?

        hard = Process.getrlimit(:NOFILE)[1]
        hard = MAX_CAPACITY if hard == Process::RLIM_INFINITY || hard > MAX_CAPACITY
        [hard - FD_MARGIN, 1].max
      end

      # The app of a static-only listener: every request no file answered is a 404, with the
      # public folder's 404.html when it has one.
      def not_found_app(public = nil)
        page = public && File.join(public.to_s, "404.html")
        lambda do |_env|
          if page && File.file?(page)
            [404, { "content-type" => "text/html; charset=utf-8" }, [File.binread(page)]]
          else
            [404, { "Content-Type" => "text/plain", "Content-Length" => "10" }, ["Not Found!"]]
          end
        end
      end
    end
  end
end

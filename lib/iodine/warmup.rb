# frozen_string_literal: true

module Iodine
  module Base
    # `-warmup` / `--preload`: before the server binds its port (in the master, before any
    # fork, so workers share what it loaded), loads every constant the app registered with
    # `autoload` (walking the modules reachable from Object, as far as MAX_CONSTANTS), then
    # sends one `GET /` through the app so its lazy setup (routes, caches, templates) runs
    # too. Autoloads that lead into Ruby's own library or installed gems are left alone
    # (Rack's optional handlers would try to load servers that are not there). Nothing here
    # stops the server from starting: a constant or a request that fails is logged.
    module Warmup
      # Most constants looked at (a guard against huge or cyclic namespaces).
      MAX_CONSTANTS = 50_000

      module_function

      # Warms `app` up and logs what was done.
      def run(app)
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        loaded = autoloads
        status = request(app)
        ms = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000).round
        Base.log(4, "Warmup: #{loaded} autoloaded constants loaded, GET / answered #{status} (#{ms} ms)")
      end

      # Loads the autoloaded constants of every module reachable from Object; how many.
      def autoloads
        seen = {}
        queue = [Object]
        loaded = 0
        looked = 0
        until queue.empty? || looked > MAX_CONSTANTS
          mod = queue.shift
          next if seen[mod.__id__]

          seen[mod.__id__] = true
          mod.constants(false).each do |name|
            looked += 1
            loaded += 1 if load_one(mod, name)
            # An autoload left pending is not the app's: reading it would load it anyway.
            next if mod.autoload?(name, false)

            value = begin
              mod.const_get(name, false)
            rescue StandardError, LoadError, NotImplementedError
              nil
            end
            queue << value if value.is_a?(Module) && !seen[value.__id__]
          end
        end
        loaded
      end

      # Loads `mod::name` if it is one of the app's autoloads; true when it was.
      def load_one(mod, name)
        path = mod.autoload?(name, false)
        return false unless path && apps?(path)

        mod.const_get(name, false)
        true
      rescue StandardError, LoadError, NotImplementedError => e
        Base.log(3, "Warmup: #{mod == Object ? '' : "#{mod}::"}#{name} failed to load: #{e.class}: #{e.message}")
        false
      end

      # Whether the autoload `path` is the app's: found, and not inside Ruby's library, the
      # installed gems or iodine.
      def apps?(path)
        file = resolve(path)
        file && library_dirs.none? { |dir| file.start_with?(dir) }
      end

      # The file a `require` of `path` would load, or nil.
      def resolve(path)
        candidates = [path, "#{path}.rb"]
        return candidates.map { |c| File.expand_path(c) }.find { |f| File.file?(f) } if path.start_with?("/", "./", "../")

        $LOAD_PATH.each do |dir|
          found = candidates.map { |c| File.expand_path(c, dir.to_s) }.find { |f| File.file?(f) }
          return found if found
        end
        nil
      end

      # Folders whose files are not the app's.
      def library_dirs
        @library_dirs ||= begin
          dirs = %w[rubylibprefix vendordir sitedir rubyarchprefix].map { |key| RbConfig::CONFIG[key] }
          dirs += Gem.path if defined?(Gem)
          dirs << "/usr/share/rubygems-integration" << File.expand_path("..", __dir__)
          dirs.compact.reject(&:empty?).map { |dir| File.join(File.expand_path(dir), "") }
        end
      end

      # Sends one GET / through `app`; its status, or the error's class.
      def request(app)
        status, _headers, body = app.call(env)
        body.each { |_| nil } if body.respond_to?(:each)
        status
      rescue StandardError => e
        Base.log(3, "Warmup: GET / raised #{e.class}: #{e.message}")
        e.class
      ensure
        body.close if body.respond_to?(:close)
      end

      # A minimal Rack env for `GET /` (what the server would build for a bare request).
      def env
        port = Iodine::DEFAULT_SETTINGS[:port].to_s
        {
          "REQUEST_METHOD" => "GET", "SCRIPT_NAME" => "", "PATH_INFO" => "/", "QUERY_STRING" => "",
          "SERVER_NAME" => "localhost", "SERVER_PORT" => port.empty? ? "80" : port,
          "SERVER_PROTOCOL" => "HTTP/1.1", "HTTP_HOST" => "localhost", "HTTP_VERSION" => "HTTP/1.1",
          "REMOTE_ADDR" => "127.0.0.1", "rack.version" => [1, 3], "rack.url_scheme" => "http",
          "rack.input" => StringIO.new(String.new(encoding: Encoding::BINARY)), "rack.errors" => $stderr,
          "rack.multithread" => true, "rack.multiprocess" => false, "rack.run_once" => false,
          "rack.hijack?" => false, "iodine.warmup" => true
        }
      end
    end
  end
end
